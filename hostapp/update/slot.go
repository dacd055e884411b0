package update

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

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
// by reading it back. The head of the filesystem is first cleared and written last. It returns the sha256
// of the bytes now in the slot.
func writeSlot(ctx context.Context, d disk.Disk, p partition.Partition, r io.Reader, size int64, label string, chunk int, progress func(done, total int64)) ([32]byte, error) {
	var sum [32]byte
	switch {
	case size > p.Size:
		return sum, fmt.Errorf("%d MiB filesystem, slot partition %d holds %d MiB: %w", (size+(1<<20)-1)>>20, p.Number, p.Size>>20, ErrNoSpace)
	case size < headSize:
		return sum, fmt.Errorf("filesystem image of %d bytes is too small", size)
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	// 1. The old filesystem stops being one: no reader may take a half-written slot for a system.
	if _, err := d.WriteAt(make([]byte, headSize), p.Start); err != nil {
		return sum, fmt.Errorf("slot partition %d: %w", p.Number, err)
	}
	if err := d.Sync(); err != nil {
		return sum, fmt.Errorf("slot partition %d: %w", p.Number, err)
	}
	// 2. The head is read first, labelled in memory, hashed in place; the rest streams after it.
	head := make([]byte, headSize)
	if _, err := io.ReadFull(r, head); err != nil {
		return sum, fmt.Errorf("update payload: %w", err)
	}
	if err := ext4.SetLabel(head, label); err != nil {
		return sum, fmt.Errorf("update payload: %w", err)
	}
	h := sha256.New()
	h.Write(head)
	if chunk <= 0 {
		chunk = slotChunk
	}
	buf := make([]byte, chunk)
	off := int64(headSize)
	for off < size {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		n := min(int64(len(buf)), size-off)
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("ends after %d of %d bytes: %w", off+0, size, err)
			}
			return sum, fmt.Errorf("update payload: %w", err)
		}
		if _, err := d.WriteAt(buf[:n], p.Start+off); err != nil {
			return sum, fmt.Errorf("slot partition %d: %w", p.Number, err)
		}
		h.Write(buf[:n])
		off += n
		progress(off, size)
	}
	// The source must end here, and only now have its hashes been checked (a bundle reports a
	// mismatch from this read).
	if n, err := io.ReadFull(r, buf[:1]); n != 0 || !errors.Is(err, io.EOF) {
		if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("longer than its declared size")
		}
		return sum, fmt.Errorf("update payload: %w", err)
	}
	if err := d.Sync(); err != nil {
		return sum, fmt.Errorf("slot partition %d: %w", p.Number, err)
	}
	// 3. The head makes it a filesystem.
	if _, err := d.WriteAt(head, p.Start); err != nil {
		return sum, fmt.Errorf("slot partition %d: %w", p.Number, err)
	}
	if err := d.Sync(); err != nil {
		return sum, fmt.Errorf("slot partition %d: %w", p.Number, err)
	}
	copy(sum[:], h.Sum(nil))
	// 4. Read back what is there.
	back, err := hashRange(ctx, d, p.Start, size, buf)
	if err != nil {
		return sum, fmt.Errorf("verify slot partition %d: %w", p.Number, err)
	}
	if !bytes.Equal(back[:], sum[:]) {
		return sum, fmt.Errorf("verify slot partition %d: what was read back differs from what was written", p.Number)
	}
	return sum, nil
}

// hashRange hashes size bytes of d from off.
func hashRange(ctx context.Context, d io.ReaderAt, off, size int64, buf []byte) ([32]byte, error) {
	var sum [32]byte
	h := sha256.New()
	for done := int64(0); done < size; {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		n := min(int64(len(buf)), size-done)
		if _, err := d.ReadAt(buf[:n], off+done); err != nil {
			return sum, err
		}
		h.Write(buf[:n])
		done += n
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
