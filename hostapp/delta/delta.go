package delta

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// A delta is a header naming the base it applies to and the full chunk index of the new image, followed
// by a zstd stream of the new image's chunks that the base lacks, in index order:
//
//	"HOSTOSDL" | version u32 | base size u64 | base sha256 [32] | base version (u16 length, bytes)
//	| index length u64 | index (Index.MarshalBinary) | zstd(chunk data ...)
var deltaMagic = []byte("HOSTOSDL")

const (
	deltaVersion   = 1
	maxVersionLen  = 256
	maxIndexLength = 1 << 30
)

// Sentinels callers branch on.
var (
	ErrWrongBase = errors.New("delta does not apply to this base")
	ErrCorrupt   = errors.New("delta is damaged")
)

// Header is what a delta says before its chunks.
type Header struct {
	BaseSize    int64
	BaseSum     [32]byte
	BaseVersion string
	Index       Index
}

// Stats describe a delta made by Create.
type Stats struct {
	Chunks, NewChunks int
	NewBytes          int64
	DeltaBytes        int64
}

// Create writes to w a delta that turns base (baseSize bytes, of version baseVersion) into target
// (targetSize bytes): target's chunk index and the chunks of target that base lacks, zstd-compressed.
func Create(ctx context.Context, base io.ReaderAt, baseSize int64, baseVersion string, target io.ReaderAt, targetSize int64, p Params, w io.Writer) (Stats, error) {
	var st Stats
	if len(baseVersion) > maxVersionLen {
		return st, fmt.Errorf("base version: longer than %d bytes", maxVersionLen)
	}
	have := map[[32]byte]bool{}
	whole := sha256.New()
	err := Split(ctxReader(ctx, io.NewSectionReader(base, 0, baseSize)), p, func(c Chunk, data []byte) error {
		have[c.Sum] = true
		whole.Write(data)
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("chunk base: %w", err)
	}
	idx := Index{Params: p, Size: targetSize}
	err = Split(ctxReader(ctx, io.NewSectionReader(target, 0, targetSize)), p, func(c Chunk, _ []byte) error {
		idx.Chunks = append(idx.Chunks, c)
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("chunk target: %w", err)
	}
	cw := &countWriter{w: w}
	var bs [32]byte
	copy(bs[:], whole.Sum(nil))
	if _, err := cw.Write(encodeHeader(Header{BaseSize: baseSize, BaseSum: bs, BaseVersion: baseVersion, Index: idx})); err != nil {
		return st, fmt.Errorf("write delta: %w", err)
	}
	zw, err := zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return st, err
	}
	buf := make([]byte, p.Max)
	st.Chunks = len(idx.Chunks)
	for _, c := range idx.Chunks {
		if have[c.Sum] {
			continue
		}
		if err := ctx.Err(); err != nil {
			zw.Close()
			return st, err
		}
		if _, err := target.ReadAt(buf[:c.Len], c.Off); err != nil {
			zw.Close()
			return st, fmt.Errorf("read target at %d: %w", c.Off, err)
		}
		if _, err := zw.Write(buf[:c.Len]); err != nil {
			zw.Close()
			return st, fmt.Errorf("write delta: %w", err)
		}
		st.NewChunks++
		st.NewBytes += c.Len
	}
	if err := zw.Close(); err != nil {
		return st, fmt.Errorf("write delta: %w", err)
	}
	st.DeltaBytes = cw.n
	return st, nil
}

// encodeHeader encodes a delta's header.
func encodeHeader(h Header) []byte {
	ib, _ := h.Index.MarshalBinary()
	var hdr bytes.Buffer
	hdr.Write(deltaMagic)
	binary.Write(&hdr, binary.BigEndian, uint32(deltaVersion))
	binary.Write(&hdr, binary.BigEndian, uint64(h.BaseSize))
	hdr.Write(h.BaseSum[:])
	binary.Write(&hdr, binary.BigEndian, uint16(len(h.BaseVersion)))
	hdr.WriteString(h.BaseVersion)
	binary.Write(&hdr, binary.BigEndian, uint64(len(ib)))
	hdr.Write(ib)
	return hdr.Bytes()
}

// Compose writes to w a delta of header h whose new chunks (the chunks of h.Index that the base lacks,
// in index order, each as often as the index has it) next yields one at a time, io.EOF after the last.
// It is how a delta is put together from chunks fetched one by one.
func Compose(w io.Writer, h Header, next func() ([]byte, error)) error {
	if len(h.BaseVersion) > maxVersionLen {
		return fmt.Errorf("base version: longer than %d bytes", maxVersionLen)
	}
	if _, err := w.Write(encodeHeader(h)); err != nil {
		return fmt.Errorf("write delta: %w", err)
	}
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	for {
		b, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			_, err = zw.Write(b)
		}
		if err != nil {
			zw.Close()
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write delta: %w", err)
	}
	return nil
}

// ReadHeader decodes a delta's header from its first bytes; it returns the header and the payload's
// offset.
func ReadHeader(d io.ReaderAt, size int64) (Header, int64, error) {
	var h Header
	r := io.NewSectionReader(d, 0, size)
	fixed := make([]byte, 8+4+8+32+2)
	if _, err := io.ReadFull(r, fixed); err != nil || !bytes.Equal(fixed[:8], deltaMagic) {
		return h, 0, fmt.Errorf("%w: not a hostos delta", ErrCorrupt)
	}
	if v := binary.BigEndian.Uint32(fixed[8:]); v != deltaVersion {
		return h, 0, fmt.Errorf("%w: delta version %d", ErrCorrupt, v)
	}
	h.BaseSize = int64(binary.BigEndian.Uint64(fixed[12:]))
	copy(h.BaseSum[:], fixed[20:52])
	vl := int(binary.BigEndian.Uint16(fixed[52:]))
	if vl > maxVersionLen || h.BaseSize < 0 {
		return h, 0, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	vb := make([]byte, vl+8)
	if _, err := io.ReadFull(r, vb); err != nil {
		return h, 0, fmt.Errorf("%w: truncated header", ErrCorrupt)
	}
	h.BaseVersion = string(vb[:vl])
	il := binary.BigEndian.Uint64(vb[vl:])
	pos := int64(len(fixed) + len(vb))
	if il > maxIndexLength || int64(il) > size-pos {
		return h, 0, fmt.Errorf("%w: truncated index (%d bytes announced)", ErrCorrupt, il)
	}
	ib := make([]byte, il)
	if _, err := io.ReadFull(r, ib); err != nil {
		return h, 0, fmt.Errorf("%w: truncated index", ErrCorrupt)
	}
	if err := h.Index.UnmarshalBinary(ib); err != nil {
		return h, 0, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return h, pos + int64(il), nil
}

// Apply writes to w the image the delta d (size bytes) describes, from the chunks of base (whose first
// BaseSize bytes must be the base the delta was made from) and the delta's own: Prepare, then WriteTo.
// Nothing is written unless every check of Prepare passed. progress, if not nil, gets the bytes written
// and the image size.
func Apply(ctx context.Context, base io.ReaderAt, baseAvail int64, d io.ReaderAt, size int64, w io.Writer, progress func(done, total int64)) (Header, error) {
	pl, err := Prepare(ctx, base, baseAvail, d, size)
	if err != nil {
		return pl.Header, err
	}
	return pl.Header, pl.WriteTo(ctx, w, progress)
}

// Plan is a delta checked against its base, ready to write the new image.
type Plan struct {
	Header
	base    io.ReaderAt
	d       io.ReaderAt
	payload int64
	size    int64
	from    []int64 // for each chunk of the index: its offset in base, or -1 when the delta carries it
	probed  bool    // every chunk was found at its own offset or in the delta, the base not split

	// NoRecheck makes WriteTo take the base's chunks without hashing them again, for a caller whose
	// writer checks every byte it wrote against the new image's digest anyway (hostos's slot writer
	// reads the slot back and hashes it): one hash of the image fewer.
	NoRecheck bool
}

// NewBytes is how many bytes of the new image come from the delta rather than the base.
func (pl *Plan) NewBytes() int64 {
	var n int64
	for i, c := range pl.Index.Chunks {
		if pl.from[i] < 0 {
			n += c.Len
		}
	}
	return n
}

// Prepare reads the delta d (size bytes) and checks it against base, writing nothing: the base's size
// and digest (a different base is ErrWrongBase, naming the version the delta needs), then every chunk of
// the delta (its sha256 against the index, none missing, nothing after the last; ErrCorrupt). The
// returned Plan holds the header even on error, when the header could be read.
//
// A filesystem image keeps its unchanged blocks where they were, so Prepare first looks for each chunk
// the new image takes from the base at the chunk's own offset, and takes the others from the delta in
// order, each checked by its sha256, in one read of the base that also checks its digest. Only when that
// does not account for every chunk (a chunk of the base moved, or the delta is damaged) is the base split
// as the delta's maker split it. Either way every byte of the new image is checked against the index.
func Prepare(ctx context.Context, base io.ReaderAt, baseAvail int64, d io.ReaderAt, size int64) (*Plan, error) {
	h, payload, err := ReadHeader(d, size)
	pl := &Plan{Header: h, base: base, d: d, payload: payload, size: size}
	if err != nil {
		return pl, err
	}
	need := "base " + hex.EncodeToString(h.BaseSum[:8])
	if h.BaseVersion != "" {
		need = "version " + h.BaseVersion
	}
	if baseAvail < h.BaseSize {
		return pl, fmt.Errorf("%w: it needs %s (%d bytes), the base has %d bytes", ErrWrongBase, need, h.BaseSize, baseAvail)
	}
	wrong := fmt.Errorf("%w: it needs %s, the running slot differs", ErrWrongBase, need)
	if from, err := probe(ctx, h, base, d, payload, size, wrong); err != nil {
		return pl, err
	} else if from != nil {
		pl.from, pl.probed = from, true
		return pl, nil
	}
	// The base's chunks, found by splitting it with the delta's parameters.
	at := map[[32]byte]int64{}
	whole := sha256.New()
	err = Split(ctxReader(ctx, io.NewSectionReader(base, 0, h.BaseSize)), h.Index.Params, func(c Chunk, data []byte) error {
		if _, ok := at[c.Sum]; !ok {
			at[c.Sum] = c.Off
		}
		whole.Write(data)
		return nil
	})
	if err != nil {
		return pl, fmt.Errorf("read base: %w", err)
	}
	if !bytes.Equal(whole.Sum(nil), h.BaseSum[:]) {
		return pl, wrong
	}
	// Every chunk the delta carries, checked without writing.
	from := make([]int64, len(h.Index.Chunks))
	for i, c := range h.Index.Chunks {
		from[i] = -1
		if off, ok := at[c.Sum]; ok {
			from[i] = off
		}
	}
	if err := eachNew(ctx, h, from, d, payload, size, func(int, []byte) error { return nil }); err != nil {
		return pl, err
	}
	pl.from = from
	return pl, nil
}

// probe looks for each chunk of the new image at its own offset in the base, else next in the delta's
// payload, and returns where each comes from; nil when that does not account for every chunk and the
// whole payload, the base then to be split. It reads the base once, in order, and checks it against the
// digest the delta names (wrong is the error then); only that and the context's error are errors.
//
// The payload holds, in index order, exactly the chunks whose sums the maker's base lacked. A chunk can
// be in the base at its own offset and still be in the payload (a change that cut a chunk of the base in
// two); it is in the payload exactly when the payload's next bytes are the chunk's, compared byte for
// byte, so the probe keeps in step with the payload.
func probe(ctx context.Context, h Header, base io.ReaderAt, d io.ReaderAt, payload, size int64, wrong error) ([]int64, error) {
	zr, err := zstd.NewReader(io.NewSectionReader(d, payload, size-payload), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, nil
	}
	defer zr.Close()
	pr := bufio.NewReaderSize(zr, int(h.Index.Params.Max))
	from := make([]int64, len(h.Index.Chunks))
	whole := newDigestAhead(int(h.Index.Params.Max))
	defer whole.stop()
	var hashed int64 // the base's bytes in whole so far
	ok := true
	for i, c := range h.Index.Chunks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := whole.buffer()[:c.Len]
		inBase := false
		n := max(min(c.Off+c.Len, h.BaseSize)-c.Off, 0)
		if n > 0 {
			if _, err := base.ReadAt(b[:n], c.Off); err != nil {
				return nil, nil
			}
			hashed += n
			inBase = n == c.Len && sha256.Sum256(b) == c.Sum
		}
		if ok {
			next, _ := pr.Peek(len(b))
			switch {
			case inBase && !bytes.Equal(next, b):
				from[i] = c.Off
			case inBase, len(next) == len(b) && sha256.Sum256(next) == c.Sum:
				from[i] = -1
				pr.Discard(len(b))
			default:
				ok = false // the rest of the base is still hashed: a wrong base is told as such
			}
		}
		whole.add(b[:n])
	}
	// A base longer than the new image: the rest of it, for its digest.
	for hashed < h.BaseSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := whole.buffer()
		b = b[:min(int64(len(b)), h.BaseSize-hashed)]
		if _, err := base.ReadAt(b, hashed); err != nil {
			return nil, nil
		}
		hashed += int64(len(b))
		whole.add(b)
	}
	if !bytes.Equal(whole.sum(), h.BaseSum[:]) {
		return nil, wrong
	}
	if _, err := pr.Peek(1); !ok || !errors.Is(err, io.EOF) {
		return nil, nil
	}
	return from, nil
}

// digestAhead takes the sha256 of the buffers added to it, in order, on a goroutine of its own: a digest
// of the whole base then costs no time beside the chunk sums taken on another core.
type digestAhead struct {
	h    hash.Hash
	work chan []byte
	free chan []byte
	done chan struct{}
	once sync.Once
}

const digestBuffers = 4

func newDigestAhead(size int) *digestAhead {
	d := &digestAhead{h: sha256.New(), work: make(chan []byte, digestBuffers), free: make(chan []byte, digestBuffers),
		done: make(chan struct{})}
	for range digestBuffers {
		d.free <- make([]byte, size)
	}
	go func() {
		defer close(d.done)
		for b := range d.work {
			d.h.Write(b)
			d.free <- b[:cap(b)]
		}
	}()
	return d
}

// buffer returns a buffer to fill and add; it waits for one to be hashed.
func (d *digestAhead) buffer() []byte { return <-d.free }

// add hashes b, a buffer from buffer (perhaps shortened), which the caller no longer touches.
func (d *digestAhead) add(b []byte) { d.work <- b }

// sum returns the digest of all added.
func (d *digestAhead) sum() []byte {
	d.stop()
	return d.h.Sum(nil)
}

// stop ends the goroutine once it has hashed what was added.
func (d *digestAhead) stop() {
	d.once.Do(func() { close(d.work) })
	<-d.done
}

// WriteTo streams the new image to w, chunk by chunk: each chunk taken from the base is hashed again
// (ErrWrongBase when the base changed since Prepare) unless NoRecheck is set, each of the delta's too. progress, if not nil,
// gets the bytes written and the image size.
func (pl *Plan) WriteTo(ctx context.Context, w io.Writer, progress func(done, total int64)) error {
	if pl.from == nil {
		return errors.New("delta: not prepared")
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	h, from, base := pl.Header, pl.from, pl.base
	var done int64
	buf := make([]byte, h.Index.Params.Max)
	next := 0
	write := func(b []byte) error {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("write image at %d: %w", done, err)
		}
		done += int64(len(b))
		progress(done, h.Index.Size)
		return nil
	}
	fromBase := func(upto int) error {
		for ; next < upto; next++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			c, off := h.Index.Chunks[next], from[next]
			b := buf[:c.Len]
			if _, err := base.ReadAt(b, off); err != nil {
				return fmt.Errorf("read base at %d: %w", off, err)
			}
			if !pl.NoRecheck && sha256.Sum256(b) != c.Sum {
				return fmt.Errorf("%w: base chunk at %d changed while applying", ErrWrongBase, off)
			}
			if err := write(b); err != nil {
				return err
			}
		}
		return nil
	}
	err := eachNew(ctx, h, from, pl.d, pl.payload, pl.size, func(i int, data []byte) error {
		if err := fromBase(i); err != nil {
			return err
		}
		next = i + 1
		return write(data)
	})
	if err != nil {
		return err
	}
	if err := fromBase(len(h.Index.Chunks)); err != nil {
		return err
	}
	if done != h.Index.Size {
		return fmt.Errorf("%w: wrote %d of %d bytes", ErrCorrupt, done, h.Index.Size)
	}
	return nil
}

// eachNew decodes the delta's payload and calls fn with the index position and data of each chunk the
// delta carries (from[i] < 0), in order, after checking its sha256.
func eachNew(ctx context.Context, h Header, from []int64, d io.ReaderAt, payload, size int64, fn func(int, []byte) error) error {
	zr, err := zstd.NewReader(io.NewSectionReader(d, payload, size-payload), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	defer zr.Close()
	buf := make([]byte, h.Index.Params.Max)
	for i, c := range h.Index.Chunks {
		if from[i] >= 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:c.Len]
		if _, err := io.ReadFull(zr, b); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: chunk %d (%x) is missing", ErrCorrupt, i, c.Sum[:8])
			}
			return fmt.Errorf("%w: chunk %d (%x): truncated or unreadable: %v", ErrCorrupt, i, c.Sum[:8], oneLine(err))
		}
		if sha256.Sum256(b) != c.Sum {
			return fmt.Errorf("%w: chunk %d (%x): sha256 mismatch", ErrCorrupt, i, c.Sum[:8])
		}
		if err := fn(i, b); err != nil {
			return err
		}
	}
	var one [1]byte
	if n, err := zr.Read(one[:]); n > 0 {
		return fmt.Errorf("%w: data after the last chunk", ErrCorrupt)
	} else if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: after the last chunk: %v", ErrCorrupt, oneLine(err))
	}
	return nil
}

func oneLine(err error) string {
	return string(bytes.Join(bytes.Fields([]byte(err.Error())), []byte(" ")))
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// ctxReader ends a read with ctx's error once ctx is done.
func ctxReader(ctx context.Context, r io.Reader) io.Reader { return &ctxR{ctx, r} }

type ctxR struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxR) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}
