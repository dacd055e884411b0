package flash

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
)

// writer streams image bytes to the target in three stages running side by side: a producer (reading or
// decompressing the image and cutting it into mapped pieces), the writes, and the hashing of each span.
type writer struct {
	ctx      context.Context
	out      *os.File
	dev      string
	newHash  func() hash.Hash
	progress func(step string, done, total int64)
	limit    int64 // the device's size; 0 for a file

	spans   []span // after run: every span written, with its sum
	written int64
	size    int64 // image bytes seen by a stream producer
}

// piece is buf[lo:hi] of a batch, the image bytes at off, part of span number span.
type piece struct {
	off    int64
	lo, hi int
	span   int
}

type batch struct {
	buf    []byte
	pieces []piece
}

// run drives produce (which fills batches from free and sends them on full, closing full when done) and
// writes and hashes what it sends. wants, if not nil, are the block map's checksums of the spans.
func (w *writer) run(total int64, wants []string, produce func(ctx context.Context, free <-chan []byte, full chan<- batch) error) error {
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	free := make(chan []byte, bufs)
	for range bufs {
		free <- make([]byte, bufSize)
	}
	full := make(chan batch, bufs)
	hashq := make(chan batch, bufs)
	prodErr := make(chan error, 1)
	go func() { prodErr <- produce(ctx, free, full) }()

	type sumAt struct {
		off, end int64
		sum      []byte
	}
	var sums []sumAt
	hashErr := make(chan error, 1)
	go func() {
		h, cur := w.newHash(), -1
		var start, end int64
		finish := func() error {
			if cur < 0 {
				return nil
			}
			s := h.Sum(nil)
			if wants != nil && hex.EncodeToString(s) != wants[cur] {
				return fmt.Errorf("image: bytes %d-%d do not match the checksum of its block map", start, end-1)
			}
			sums = append(sums, sumAt{off: start, end: end, sum: s})
			h.Reset()
			return nil
		}
		var err error
		for b := range hashq {
			for _, p := range b.pieces {
				if err != nil {
					break
				}
				if p.span != cur {
					if err = finish(); err != nil {
						cancel()
						break
					}
					cur, start = p.span, p.off
				}
				h.Write(b.buf[p.lo:p.hi])
				end = p.off + int64(p.hi-p.lo)
			}
			free <- b.buf
		}
		if err == nil {
			err = finish()
		}
		if err != nil {
			cancel()
		}
		hashErr <- err
	}()

	var werr error
	w.progress("write", 0, total)
	for b := range full {
		if werr == nil {
			werr = w.write(b)
			if werr != nil {
				cancel()
			}
		}
		if werr != nil {
			free <- b.buf
			continue
		}
		hashq <- b
		w.progress("write", w.written, total)
	}
	close(hashq)
	herr := <-hashErr
	perr := <-prodErr
	for _, err := range []error{werr, perr, herr} {
		if err != nil && !(errors.Is(err, context.Canceled) && w.ctx.Err() == nil) {
			return err
		}
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	w.spans = w.spans[:0]
	for _, s := range sums {
		w.spans = append(w.spans, span{off: s.off, n: s.end - s.off, sum: s.sum})
	}
	return nil
}

func (w *writer) write(b batch) error {
	for _, p := range b.pieces {
		n := int64(p.hi - p.lo)
		if w.limit > 0 && p.off+n > w.limit {
			return fmt.Errorf("device %s: the image is larger than its %d bytes", w.dev, w.limit)
		}
		if _, err := w.out.WriteAt(b.buf[p.lo:p.hi], p.off); err != nil {
			return fmt.Errorf("device %s: write at %d: %w", w.dev, p.off, err)
		}
		if w.limit > 0 {
			startWriteback(w.out, p.off, n)
		}
		w.written += n
	}
	return nil
}

// send hands a batch on unless the run was cancelled.
func send(ctx context.Context, full chan<- batch, b batch) error {
	select {
	case full <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func take(ctx context.Context, free <-chan []byte) ([]byte, error) {
	select {
	case b := <-free:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func spanTotal(spans []span) int64 {
	var n int64
	for _, s := range spans {
		n += s.n
	}
	return n
}

func wantsOf(spans []span) []string {
	if len(spans) == 0 || spans[0].want == "" {
		return nil
	}
	w := make([]string, len(spans))
	for i, s := range spans {
		w[i] = s.want
	}
	return w
}

// fromFile writes the spans of the raw image in, read where they lie.
func (w *writer) fromFile(in *os.File, spans []span) error {
	return w.run(spanTotal(spans), wantsOf(spans), func(ctx context.Context, free <-chan []byte, full chan<- batch) error {
		defer close(full)
		for i, s := range spans {
			for off := s.off; off < s.off+s.n; {
				buf, err := take(ctx, free)
				if err != nil {
					return err
				}
				k := int(min(int64(len(buf)), s.off+s.n-off))
				if _, err := in.ReadAt(buf[:k], off); err != nil {
					return fmt.Errorf("image: read at %d: %w", off, err)
				}
				if err := send(ctx, full, batch{buf: buf, pieces: []piece{{off: off, lo: 0, hi: k, span: i}}}); err != nil {
					return err
				}
				off += int64(k)
			}
		}
		return nil
	})
}

// fromStream writes the spans of the image streamed by r, whose size is size, skipping the bytes between.
func (w *writer) fromStream(r io.Reader, spans []span, size int64) error {
	return w.run(spanTotal(spans), wantsOf(spans), func(ctx context.Context, free <-chan []byte, full chan<- batch) error {
		defer close(full)
		var pos int64
		si := 0
		for pos < size {
			buf, err := take(ctx, free)
			if err != nil {
				return err
			}
			k := int(min(int64(len(buf)), size-pos))
			n, err := io.ReadFull(r, buf[:k])
			if err != nil {
				return fmt.Errorf("image: ends at byte %d, its block map says %d: %w", pos+int64(n), size, err)
			}
			b := batch{buf: buf}
			end := pos + int64(n)
			for si < len(spans) && spans[si].off < end {
				s := spans[si]
				lo, hi := max(s.off, pos), min(s.off+s.n, end)
				b.pieces = append(b.pieces, piece{off: lo, lo: int(lo - pos), hi: int(hi - pos), span: si})
				if s.off+s.n > end {
					break
				}
				si++
			}
			if err := send(ctx, full, b); err != nil {
				return err
			}
			pos = end
		}
		var one [1]byte
		if n, _ := io.ReadFull(r, one[:]); n > 0 {
			return fmt.Errorf("image: longer than the %d bytes its block map says", size)
		}
		return nil
	})
}

// fromStreamZeros writes the blocks of the image streamed by r that are not all zero, each run of them a
// span.
func (w *writer) fromStreamZeros(r io.Reader) error {
	var size int64
	err := w.run(-1, nil, func(ctx context.Context, free <-chan []byte, full chan<- batch) error {
		defer close(full)
		var pos int64
		span, open := -1, false
		var zero [blockSize]byte
		for {
			buf, err := take(ctx, free)
			if err != nil {
				return err
			}
			n, rerr := io.ReadFull(r, buf)
			if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
				return fmt.Errorf("image: at byte %d: %w", pos+int64(n), rerr)
			}
			b := batch{buf: buf}
			for i := 0; i < n; i += blockSize {
				j := min(i+blockSize, n)
				if bytes.Equal(buf[i:j], zero[:j-i]) {
					open = false
					continue
				}
				if np := len(b.pieces); open && np > 0 && b.pieces[np-1].hi == i {
					b.pieces[np-1].hi = j
					continue
				}
				if !open {
					span++
					open = true
				}
				b.pieces = append(b.pieces, piece{off: pos + int64(i), lo: i, hi: j, span: span})
			}
			pos += int64(n)
			if err := send(ctx, full, b); err != nil { // a batch without pieces only returns its buffer
				return err
			}
			if rerr != nil {
				size = pos
				return nil
			}
		}
	})
	w.size = size
	return err
}
