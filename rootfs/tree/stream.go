package tree

import (
	"errors"
	"io"
)

// streamBuf is the buffer of a streamReader reading an io.Reader: as large as the pipe from a
// decompressing program, whose content one read then takes whole.
const streamBuf = 1 << 20

// streamReader reads a decompressed tar stream piece by piece: from a buffer of its own that it reads an
// io.Reader into, or from the chunks of a readAhead. On Linux the stager writes a regular file's body to
// its file straight from those pieces (writeBody), past the tar reader reading the stream, which then
// skips the body with Seek: no copy of the body in user space.
type streamReader struct {
	// next returns the next piece of the stream, valid until the next call, with the error that ends
	// the stream after it, if any.
	next  func() ([]byte, error)
	piece []byte // what is left of the current piece
	// pos is the stream offset of what the tar reader has read or skipped; ahead counts the bytes past
	// pos that writeBody took, which the tar reader has yet to skip.
	pos, ahead int64
	err        error // io.EOF at the end of the stream, or why it cannot go on
}

// newStreamReader reads src through a buffer of streamBuf.
func newStreamReader(src io.Reader) *streamReader {
	buf := make([]byte, streamBuf)
	return &streamReader{next: func() ([]byte, error) {
		// A reader may return nothing and no error a few times.
		for i := 0; i < 100; i++ {
			if n, err := src.Read(buf); n > 0 || err != nil {
				return buf[:max(n, 0)], err
			}
		}
		return nil, io.ErrNoProgress
	}}
}

// newChunkStream reads the chunks of ra, as they come.
func newChunkStream(ra *readAhead) *streamReader {
	return &streamReader{next: ra.next}
}

// fill moves to the next piece once the current one is taken; false at the end of the stream, whose
// error p.err then holds.
func (p *streamReader) fill() bool {
	for len(p.piece) == 0 {
		if p.err != nil {
			return false
		}
		p.piece, p.err = p.next()
	}
	return true
}

// Read hands out first the bytes writeBody took past the tar reader, as zeros for it to discard (it
// skips most of them with Seek, and reads the last one), then the stream.
func (p *streamReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if p.ahead > 0 {
		n := int(min(int64(len(b)), p.ahead))
		clear(b[:n])
		p.ahead -= int64(n)
		p.pos += int64(n)
		return n, nil
	}
	if !p.fill() {
		return 0, p.err
	}
	n := copy(b, p.piece)
	p.piece = p.piece[n:]
	p.pos += int64(n)
	return n, nil
}

// Seek skips forward from the current offset only: the bytes writeBody took, then the stream's. A stream
// that ends before the offset is io.ErrUnexpectedEOF, or the error it ended with.
func (p *streamReader) Seek(offset int64, whence int) (int64, error) {
	if whence != io.SeekCurrent || offset < 0 {
		return p.pos, errors.New("seek: only forward from the current offset")
	}
	skip := min(offset, p.ahead)
	p.ahead -= skip
	p.pos += skip
	offset -= skip
	for offset > 0 {
		if !p.fill() {
			return p.pos, unexpectedEnd(p.err)
		}
		n := min(offset, int64(len(p.piece)))
		p.piece = p.piece[n:]
		p.pos += n
		offset -= n
	}
	return p.pos, nil
}

// unexpectedEnd is the error of a stream that ended, cleanly or not, where more was due.
func unexpectedEnd(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
