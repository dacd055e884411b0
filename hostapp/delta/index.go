package delta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Index is the chunk list of an image: enough to assemble the image from chunks found by their sums.
type Index struct {
	Params Params
	Size   int64
	Chunks []Chunk
}

// indexMagic starts an encoded index.
var indexMagic = []byte("HOSTOSIX")

const (
	indexVersion    = 1
	indexHeaderSize = 8 + 4 + 12 + 8 + 8
	indexEntrySize  = 8 + 32
)

// ErrIndex means an encoded index is malformed.
var ErrIndex = errors.New("malformed chunk index")

// MarshalBinary encodes the index: a header (magic, version, chunk sizes, count, image size), then each
// chunk's end offset and sha256, big-endian.
func (x *Index) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, indexHeaderSize+len(x.Chunks)*indexEntrySize)
	b = append(b, indexMagic...)
	b = binary.BigEndian.AppendUint32(b, indexVersion)
	b = binary.BigEndian.AppendUint32(b, x.Params.Min)
	b = binary.BigEndian.AppendUint32(b, x.Params.Avg)
	b = binary.BigEndian.AppendUint32(b, x.Params.Max)
	b = binary.BigEndian.AppendUint64(b, uint64(len(x.Chunks)))
	b = binary.BigEndian.AppendUint64(b, uint64(x.Size))
	for _, c := range x.Chunks {
		b = binary.BigEndian.AppendUint64(b, uint64(c.Off+c.Len))
		b = append(b, c.Sum[:]...)
	}
	return b, nil
}

// UnmarshalBinary decodes an index, checking that its chunks tile the image without gaps, none larger
// than the maximum chunk size.
func (x *Index) UnmarshalBinary(b []byte) error {
	if len(b) < indexHeaderSize || !bytes.Equal(b[:8], indexMagic) {
		return fmt.Errorf("%w: no header", ErrIndex)
	}
	if v := binary.BigEndian.Uint32(b[8:]); v != indexVersion {
		return fmt.Errorf("%w: version %d", ErrIndex, v)
	}
	p := Params{Min: binary.BigEndian.Uint32(b[12:]), Avg: binary.BigEndian.Uint32(b[16:]), Max: binary.BigEndian.Uint32(b[20:])}
	if err := p.Check(); err != nil {
		return fmt.Errorf("%w: %w", ErrIndex, err)
	}
	count := binary.BigEndian.Uint64(b[24:])
	size := binary.BigEndian.Uint64(b[32:])
	rest := b[indexHeaderSize:]
	if count != uint64(len(rest))/indexEntrySize || len(rest)%indexEntrySize != 0 {
		return fmt.Errorf("%w: %d chunks announced, %d bytes of entries", ErrIndex, count, len(rest))
	}
	if size > 1<<50 {
		return fmt.Errorf("%w: image size %d", ErrIndex, size)
	}
	chunks := make([]Chunk, 0, count)
	var off uint64
	for i := range count {
		e := rest[i*indexEntrySize:]
		end := binary.BigEndian.Uint64(e)
		if end <= off || end-off > uint64(p.Max) || end > size {
			return fmt.Errorf("%w: chunk %d ends at %d after %d", ErrIndex, i, end, off)
		}
		c := Chunk{Off: int64(off), Len: int64(end - off)}
		copy(c.Sum[:], e[8:40])
		chunks = append(chunks, c)
		off = end
	}
	if off != size {
		return fmt.Errorf("%w: chunks cover %d of %d bytes", ErrIndex, off, size)
	}
	*x = Index{Params: p, Size: int64(size), Chunks: chunks}
	return nil
}
