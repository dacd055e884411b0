package update

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/ext4"
)

// ErrNoSpace means the update does not fit its slot.
var ErrNoSpace = errors.New("update does not fit the slot")

// slotChunk is the unit of slot writes: large enough to run at the device's speed.
const slotChunk = 4 << 20

// headSize is the start of the filesystem written last, so that the slot holds a valid filesystem only
// once all of it is there (the primary superblock lives in it).
const headSize = 64 << 10

// writeSlot streams the filesystem image r (size bytes) into partition p of d, labels it, and verifies it
// by reading it back. The head of the filesystem is first cleared and written last, so that the slot holds
// a filesystem only once all of it is there. Reading (decompressing, hashing) and writing overlap: one
// goroutine fills chunks while this one writes them. Each chunk's CRC-32C is kept to check the read-back.
//
// With want (the digest of the image from a verified bundle) the source does not check the stream: what
// is written is read back as soon as it is written and hashed on other goroutines, and the digest must
// equal want before the head makes the slot a filesystem. That checks the payload and the write in one
// pass. Without want, each chunk's CRC-32C is kept and the slot is read back at the end.
func writeSlot(ctx context.Context, d disk.Disk, p partition.Partition, r io.Reader, size int64, want Digest, label string, chunk int, progress func(done, total int64)) error {
	switch {
	case size > p.Size:
		return fmt.Errorf("%d MiB filesystem, slot partition %d holds %d MiB: %w", (size+(1<<20)-1)>>20, p.Number, p.Size>>20, ErrNoSpace)
	case size < headSize:
		return fmt.Errorf("filesystem image of %d bytes is too small", size)
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	if chunk <= 0 {
		chunk = slotChunk
	}
	fail := func(err error) error { return fmt.Errorf("slot partition %d: %w", p.Number, err) }
	// 1. The old filesystem stops being one: no reader may take a half-written slot for a system.
	if _, err := d.WriteAt(make([]byte, headSize), p.Start); err != nil {
		return fail(err)
	}
	if err := d.Sync(); err != nil {
		return fail(err)
	}
	// 2. The head is read first and labelled in memory; the rest streams after it.
	head := make([]byte, headSize)
	if _, err := io.ReadFull(r, head); err != nil {
		return fmt.Errorf("update payload: %w", err)
	}
	orig := bytes.Clone(head)
	if err := ext4.SetLabel(head, label); err != nil {
		return fmt.Errorf("update payload: %w", err)
	}
	type piece struct {
		off int64
		buf []byte
	}
	const depth = 3 // chunks in flight: memory stays at depth+1 chunks
	free := make(chan []byte, depth+1)
	for range depth + 1 {
		free <- make([]byte, chunk)
	}
	full := make(chan piece, depth)
	stop := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(full)
		for off := int64(headSize); off < size; {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				readErr <- nil
				return
			}
			n := min(int64(len(buf)), size-off)
			if _, err := io.ReadFull(r, buf[:n]); err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					err = fmt.Errorf("ends after %d of %d bytes: %w", off, size, err)
				}
				readErr <- fmt.Errorf("update payload: %w", err)
				return
			}
			select {
			case full <- piece{off, buf[:n]}:
			case <-stop:
				readErr <- nil
				return
			}
			off += n
		}
		// The source must end here, and only now have its digests been checked (a bundle reports a
		// mismatch from this read).
		var one [1]byte
		if n, err := io.ReadFull(r, one[:]); n != 0 || !errors.Is(err, io.EOF) {
			if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
				err = errors.New("longer than its declared size")
			}
			readErr <- fmt.Errorf("update payload: %w", err)
			return
		}
		readErr <- nil
	}()
	var crcs []uint32
	var werr error
	var rb *readBack
	if want.SHA256 != "" || want.ChunksSHA256 != "" {
		rb = newReadBack(ctx, d, p.Start, size, orig, want, chunk)
	}
	for pc := range full {
		if werr == nil {
			if err := ctx.Err(); err != nil {
				werr = err
			} else if _, err := d.WriteAt(pc.buf, p.Start+pc.off); err != nil {
				werr = fail(err)
			} else if wb, ok := d.(writebacker); ok {
				wb.StartWriteback(p.Start+pc.off, int64(len(pc.buf)))
			}
			if werr != nil {
				close(stop)
			}
			if rb != nil {
				if werr == nil {
					rb.written(pc.off + int64(len(pc.buf)))
				}
			} else {
				crcs = append(crcs, crc32.Checksum(pc.buf, castagnoli))
			}
			progress(pc.off+int64(len(pc.buf)), size)
		}
		free <- pc.buf[:cap(pc.buf)]
	}
	var got string
	if rb != nil {
		got = rb.finish()
	}
	if err := <-readErr; err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if err := d.Sync(); err != nil {
		return fail(err)
	}
	if rb != nil && got != rb.want {
		return fmt.Errorf("update payload: the image written has %s %s, the bundle says %s: %w", rb.what, got, rb.want, bundle.ErrCorrupt)
	}
	// 3. The head makes it a filesystem.
	if _, err := d.WriteAt(head, p.Start); err != nil {
		return fail(err)
	}
	if err := d.Sync(); err != nil {
		return fail(err)
	}
	// 4. Read back what is there.
	back := make([]byte, headSize)
	if _, err := d.ReadAt(back, p.Start); err != nil {
		return fmt.Errorf("verify slot partition %d: %w", p.Number, err)
	}
	if !bytes.Equal(back, head) {
		return fmt.Errorf("verify slot partition %d: the filesystem head read back differs from what was written", p.Number)
	}
	if rb != nil {
		return nil // every byte was read back and hashed before the head was written
	}
	return verifyChunks(ctx, d, p, size, crcs, [][]byte{<-free, <-free})
}

// verifyChunks reads the slot back, chunk by chunk as written, with one reader per buffer in parallel,
// and compares each chunk's CRC-32C.
func verifyChunks(ctx context.Context, d disk.Disk, p partition.Partition, size int64, crcs []uint32, bufs [][]byte) error {
	chunk := int64(len(bufs[0]))
	errs := make(chan error, len(bufs))
	for w, buf := range bufs {
		go func() {
			for i := w; i < len(crcs); i += len(bufs) {
				if err := ctx.Err(); err != nil {
					errs <- err
					return
				}
				off := headSize + int64(i)*chunk
				n := min(chunk, size-off)
				if _, err := d.ReadAt(buf[:n], p.Start+off); err != nil {
					errs <- fmt.Errorf("verify slot partition %d: %w", p.Number, err)
					return
				}
				if crc32.Checksum(buf[:n], castagnoli) != crcs[i] {
					errs <- fmt.Errorf("verify slot partition %d: bytes %d-%d read back differ from what was written", p.Number, off, off+n)
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range bufs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// writebacker is a disk that can start writing data back early (partition/disk.File can).
type writebacker interface{ StartWriteback(off, n int64) }

// Digest is what a written image must hash to: the chunked digest when the bundle has one (it is
// computed on two cores), else the plain SHA-256. Empty: the source checked the stream itself.
type Digest struct {
	SHA256       string
	ChunkSize    int64
	ChunksSHA256 string
}

// readBack hashes the slot as it is written: each digest chunk once the writes cover it, on two
// goroutines. The first headSize bytes are hashed as they came in the payload (the head is labelled and
// written last; it is checked separately).
type readBack struct {
	want, what string
	chunk      int64
	size       int64
	next       int64 // first chunk not yet handed out
	jobs       chan int64
	sums       [][sha256.Size]byte
	errs       chan error
	workers    int
	finishOne  func() string
}

func newReadBack(ctx context.Context, d io.ReaderAt, start, size int64, orig []byte, want Digest, writeChunk int) *readBack {
	rb := &readBack{want: want.ChunksSHA256, what: "chunked sha256", chunk: want.ChunkSize, size: size, workers: 2}
	if want.ChunksSHA256 == "" || want.ChunkSize <= 0 {
		// One running SHA-256 must see the bytes in order: one worker, chunks of the write size.
		rb.want, rb.what, rb.chunk, rb.workers = want.SHA256, "sha256", int64(writeChunk), 1
	}
	n := (size + rb.chunk - 1) / rb.chunk
	rb.jobs = make(chan int64, n)
	rb.sums = make([][sha256.Size]byte, n)
	rb.errs = make(chan error, rb.workers)
	whole := sha256.New()
	for range rb.workers {
		go func() {
			buf := make([]byte, rb.chunk)
			var failed error
			for i := range rb.jobs {
				if failed == nil {
					failed = ctx.Err()
				}
				if failed != nil {
					continue
				}
				lo, hi := i*rb.chunk, min((i+1)*rb.chunk, size)
				b := buf[:hi-lo]
				from := lo
				if lo < headSize {
					k := copy(b, orig[lo:min(hi, headSize)])
					from = lo + int64(k)
				}
				if from < hi {
					if _, err := d.ReadAt(b[from-lo:], start+from); err != nil {
						failed = err
						continue
					}
				}
				if rb.workers == 1 {
					whole.Write(b)
				} else {
					rb.sums[i] = sha256.Sum256(b)
				}
			}
			rb.errs <- failed
		}()
	}
	if rb.workers == 1 {
		rb.sums = nil
		rb.what = "sha256"
		rb.finishOne = func() string { return hex.EncodeToString(whole.Sum(nil)) }
	}
	return rb
}

// written tells that the slot holds the image up to byte end: hand out the chunks it completes.
func (rb *readBack) written(end int64) {
	for rb.next*rb.chunk < rb.size && min((rb.next+1)*rb.chunk, rb.size) <= end {
		rb.jobs <- rb.next
		rb.next++
	}
}

// finish waits for the hashing and returns the digest, or a description of why there is none.
func (rb *readBack) finish() string {
	close(rb.jobs)
	var failed error
	for range rb.workers {
		if err := <-rb.errs; err != nil && failed == nil {
			failed = err
		}
	}
	switch {
	case failed != nil:
		return "nothing (read back: " + failed.Error() + ")"
	case rb.next*rb.chunk < rb.size:
		return "nothing (the image was not written to its end)"
	case rb.finishOne != nil:
		return rb.finishOne()
	}
	return bundle.ChunksRoot(rb.sums)
}
