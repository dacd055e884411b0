package tree

import "io"

// readAhead reads its source in a goroutine of its own, a few chunks ahead of its reader (a
// streamReader), so that a decompressor runs on one core while the staging writes run on another.
type readAhead struct {
	chunks chan chunk
	free   chan []byte
	stop   chan struct{}
	cur    []byte // the chunk its reader has
	err    error
}

type chunk struct {
	b   []byte
	err error
}

const (
	readAheadChunk = 1 << 20
	readAheadDepth = 4
)

func newReadAhead(r io.Reader) *readAhead {
	ra := &readAhead{
		chunks: make(chan chunk, readAheadDepth),
		free:   make(chan []byte, readAheadDepth+1),
		stop:   make(chan struct{}),
	}
	for i := 0; i < readAheadDepth+1; i++ {
		ra.free <- make([]byte, readAheadChunk)
	}
	go ra.fill(r)
	return ra
}

func (ra *readAhead) fill(r io.Reader) {
	defer close(ra.chunks)
	for {
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.stop:
			return
		}
		// Not io.ReadFull: it reports a short last chunk as io.ErrUnexpectedEOF, which cannot be told
		// from the same error of a truncated stream, and only the latter is an error.
		n, err := 0, error(nil)
		for n < len(b) && err == nil {
			var m int
			m, err = r.Read(b[n:])
			n += m
		}
		select {
		case ra.chunks <- chunk{b[:n], err}:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// next hands back the chunk taken before and returns the next one, with the error that ends the stream
// after it, if any.
func (ra *readAhead) next() ([]byte, error) {
	if ra.err != nil {
		return nil, ra.err
	}
	if ra.cur != nil {
		ra.free <- ra.cur[:cap(ra.cur)]
		ra.cur = nil
	}
	c, ok := <-ra.chunks
	if !ok {
		ra.err = io.ErrClosedPipe
		return nil, ra.err
	}
	ra.cur, ra.err = c.b, c.err
	return c.b, c.err
}

// Close stops the goroutine; the source is the caller's to close afterwards.
func (ra *readAhead) Close() {
	select {
	case <-ra.stop:
	default:
		close(ra.stop)
	}
	for range ra.chunks {
	}
}
