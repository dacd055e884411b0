// Package delta splits root filesystem images into content-defined chunks (a buzhash rolling hash, as
// casync does) named by their sha256, and builds and applies deltas that carry only the chunks a base
// image lacks.
package delta

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// Params are the chunker's minimum, average and maximum chunk sizes in bytes.
type Params struct {
	Min, Avg, Max uint32
}

// DefaultParams are casync's defaults: 16, 64 and 256 KiB.
var DefaultParams = Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}

// window is the number of bytes the rolling hash covers.
const window = 48

// table maps each byte value to a 32-bit random value for the buzhash. It is generated (splitmix64 from a
// fixed seed), not copied: casync's own table differs, so chunk boundaries differ from casync's (the
// README says how they compare).
var table = func() (t [256]uint32) {
	x := uint64(0x686f73746f730001) // "hostos" 1
	for i := range t {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		t[i] = uint32((z ^ z>>31) >> 32)
	}
	return t
}()

// Check rejects parameters the chunker cannot use.
func (p Params) Check() error {
	if p.Min < window || p.Min >= p.Avg || p.Avg >= p.Max || p.Max > 64<<20 {
		return fmt.Errorf("chunk sizes %d:%d:%d: want %d <= min < avg < max <= 64 MiB", p.Min, p.Avg, p.Max, window)
	}
	return nil
}

// cut returns the length of the chunk that starts b: b holds at least Max bytes, or is the image's tail.
// A chunk ends where the hash of the window of bytes before the cut, taken at least Min bytes into the
// chunk, is d-1 modulo d, with d = Avg-Min so that chunks average about Avg bytes; or at Max.
func (p Params) cut(b []byte) int {
	n := min(len(b), int(p.Max))
	if n <= int(p.Min) {
		return n
	}
	d := p.Avg - p.Min
	// h % d by multiplication (Lemire's fastmod): a division per byte would dominate the loop.
	m := ^uint64(0)/uint64(d) + 1
	mod := func(h uint32) uint32 {
		hi, _ := bits.Mul64(m*uint64(h), uint64(d))
		return uint32(hi)
	}
	var h uint32
	for _, c := range b[int(p.Min)-window : p.Min] {
		h = bits.RotateLeft32(h, 1) ^ table[c]
	}
	for i := int(p.Min); i < n; i++ {
		if mod(h) == d-1 {
			return i
		}
		h = bits.RotateLeft32(h, 1) ^ bits.RotateLeft32(table[b[i-window]], window%32) ^ table[b[i]]
	}
	return n
}

// Chunk is one chunk of an image: its bytes [Off, Off+Len) and their sha256.
type Chunk struct {
	Off, Len int64
	Sum      [32]byte
}

// Split reads r to its end and calls fn with each chunk and its bytes (valid only during the call). It
// holds at most two maximum chunks of r in memory.
func Split(r io.Reader, p Params, fn func(c Chunk, data []byte) error) error {
	if err := p.Check(); err != nil {
		return err
	}
	buf := make([]byte, 2*int(p.Max))
	var have, start int // buf[start:have] is unchunked data
	var off int64
	eof := false
	for {
		if !eof && have-start < int(p.Max) {
			copy(buf, buf[start:have])
			have -= start
			start = 0
			n, err := io.ReadFull(r, buf[have:])
			have += n
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				eof = true
			} else if err != nil {
				return err
			}
		}
		if have == start {
			return nil
		}
		n := p.cut(buf[start:have])
		data := buf[start : start+n]
		c := Chunk{Off: off, Len: int64(n), Sum: sha256.Sum256(data)}
		if err := fn(c, data); err != nil {
			return err
		}
		start += n
		off += int64(n)
	}
}
