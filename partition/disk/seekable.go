package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// The zstd images hostos writes are in zstd's seekable format (facebook/zstd,
// contrib/seekable_format): the image is cut into frames of seekFrameSize bytes, each an independent
// zstd frame, and a skippable frame at the end lists every frame's compressed and decompressed size.
// Any zstd decoder reads the file as one stream (skippable frames are skipped); a reader that knows the
// format (hostos flash) decompresses only the frames that hold the blocks it needs. The seek table:
//
//	Skippable_Magic_Number  u32le 0x184D2A5E
//	Frame_Size              u32le  size of what follows: the entries and the footer
//	entries                 Number_Of_Frames x { Compressed_Size u32le, Decompressed_Size u32le
//	                                             [, Checksum u32le when the descriptor's bit 7 is set] }
//	footer                  Number_Of_Frames u32le, Seek_Table_Descriptor u8, Seekable_Magic u32le 0x8F92EAB1
//
// hostos writes no per-frame checksum in the table: each zstd frame carries its own content checksum.
const (
	seekFrameSize     = 1 << 20
	skippableMagic    = 0x184D2A5E
	seekableMagic     = 0x8F92EAB1
	seekFooterSize    = 9
	maxSeekFrames     = 0x8000000
	maxSeekFrameBytes = 0x40000000
)

// ZstdFrame is one frame of a seekable zstd file: its bytes in the file and the image bytes it holds.
type ZstdFrame struct {
	Off, Len       int64 // in the compressed file
	ImageOff, Size int64 // in the decompressed image
}

// ZstdSeekTable reads the seek table at the end of the zstd file r of size bytes. A file without one
// (a plain zstd stream) gives nil frames and no error; a seek table that does not describe the file
// exactly is an error.
func ZstdSeekTable(r io.ReaderAt, size int64) ([]ZstdFrame, error) {
	if size < 8+seekFooterSize {
		return nil, nil
	}
	var foot [seekFooterSize]byte
	if _, err := r.ReadAt(foot[:], size-seekFooterSize); err != nil {
		return nil, fmt.Errorf("zstd seek table: %w", err)
	}
	if binary.LittleEndian.Uint32(foot[5:]) != seekableMagic {
		return nil, nil
	}
	n := int64(binary.LittleEndian.Uint32(foot[0:]))
	desc := foot[4]
	if desc&0x7c != 0 {
		return nil, fmt.Errorf("zstd seek table: reserved descriptor bits set (%#x)", desc)
	}
	entry := int64(8)
	if desc&0x80 != 0 {
		entry = 12
	}
	tableSize := n*entry + seekFooterSize
	if n > maxSeekFrames || 8+tableSize > size {
		return nil, fmt.Errorf("zstd seek table: %d frames do not fit in a %d-byte file", n, size)
	}
	table := make([]byte, 8+tableSize)
	if _, err := r.ReadAt(table, size-int64(len(table))); err != nil {
		return nil, fmt.Errorf("zstd seek table: %w", err)
	}
	if binary.LittleEndian.Uint32(table[0:]) != skippableMagic || int64(binary.LittleEndian.Uint32(table[4:])) != tableSize {
		return nil, errors.New("zstd seek table: its skippable frame header does not match its footer")
	}
	frames := make([]ZstdFrame, n)
	var off, imageOff int64
	for i := range frames {
		e := table[8+int64(i)*entry:]
		c, d := int64(binary.LittleEndian.Uint32(e)), int64(binary.LittleEndian.Uint32(e[4:]))
		if c == 0 || d > maxSeekFrameBytes {
			return nil, fmt.Errorf("zstd seek table: frame %d: %d bytes holding %d", i, c, d)
		}
		frames[i] = ZstdFrame{Off: off, Len: c, ImageOff: imageOff, Size: d}
		off += c
		imageOff += d
	}
	if off != size-int64(len(table)) {
		return nil, fmt.Errorf("zstd seek table: frames of %d bytes in all, the file holds %d before the table", off, size-int64(len(table)))
	}
	return frames, nil
}

// seekableZstd is the compressor of zstd images: frames of seekFrameSize encoded side by side, written in
// order, then the seek table. An all-zero frame (most of a disk image) is encoded once per size.
type seekableZstd struct {
	w       io.Writer
	enc     *zstd.Encoder
	buf     []byte
	pending [][]byte // full frames not yet encoded
	free    [][]byte // frame buffers to reuse
	sizes   [][2]uint32
	zero    map[int][]byte
	err     error
}

// seekBatch is how many frames are encoded at once.
const seekBatch = 4

func newSeekableZstd(w io.Writer) (*seekableZstd, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(seekBatch), zstd.WithWindowSize(seekFrameSize))
	if err != nil {
		return nil, err
	}
	return &seekableZstd{w: w, enc: enc, buf: make([]byte, 0, seekFrameSize), zero: map[int][]byte{}}, nil
}

func (z *seekableZstd) Write(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), seekFrameSize-len(z.buf))
		z.buf = append(z.buf, p[:k]...)
		p = p[k:]
		if len(z.buf) == seekFrameSize {
			z.pending = append(z.pending, z.buf)
			z.buf = nil
			if n := len(z.free); n > 0 {
				z.buf, z.free = z.free[n-1][:0], z.free[:n-1]
			} else {
				z.buf = make([]byte, 0, seekFrameSize)
			}
			if len(z.pending) == seekBatch {
				if err := z.flush(); err != nil {
					return n - len(p), err
				}
			}
		}
	}
	return n, nil
}

// flush encodes the pending frames side by side and writes them in order.
func (z *seekableZstd) flush() error {
	out := make([][]byte, len(z.pending))
	var wg sync.WaitGroup
	for i, f := range z.pending {
		if isZero(f) {
			if c, ok := z.zero[len(f)]; ok {
				out[i] = c
				continue
			}
			out[i] = z.enc.EncodeAll(f, nil)
			z.zero[len(f)] = out[i]
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = z.enc.EncodeAll(f, make([]byte, 0, len(f)/2))
		}()
	}
	wg.Wait()
	for i, c := range out {
		if _, err := z.w.Write(c); err != nil {
			z.err = err
			return err
		}
		z.sizes = append(z.sizes, [2]uint32{uint32(len(c)), uint32(len(z.pending[i]))})
	}
	z.free = append(z.free, z.pending...)
	z.pending = z.pending[:0]
	return nil
}

func (z *seekableZstd) Close() error {
	if z.err != nil {
		return z.err
	}
	if len(z.buf) > 0 {
		z.pending = append(z.pending, z.buf)
		z.buf = nil
	}
	if err := z.flush(); err != nil {
		return err
	}
	z.enc.Close()
	if _, err := z.w.Write(seekTable(z.sizes)); err != nil {
		z.err = err
		return err
	}
	z.err = errors.New("zstd stream closed")
	return nil
}

func (z *seekableZstd) Abort() {
	z.enc.Close()
	z.err = errors.New("zstd stream aborted")
}

// seekTable encodes the skippable frame listing frames of the given compressed and decompressed sizes.
func seekTable(sizes [][2]uint32) []byte {
	b := make([]byte, 0, 8+8*len(sizes)+seekFooterSize)
	b = binary.LittleEndian.AppendUint32(b, skippableMagic)
	b = binary.LittleEndian.AppendUint32(b, uint32(8*len(sizes)+seekFooterSize))
	for _, s := range sizes {
		b = binary.LittleEndian.AppendUint32(b, s[0])
		b = binary.LittleEndian.AppendUint32(b, s[1])
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(sizes)))
	b = append(b, 0)
	return binary.LittleEndian.AppendUint32(b, seekableMagic)
}
