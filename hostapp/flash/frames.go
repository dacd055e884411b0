package flash

import (
	"context"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/hostos/hostos/partition/disk"
)

// seekTable returns the frames of a seekable zstd image (disk.ZstdSeekTable) when they can drive the
// write of a block map's spans: every frame fits a buffer and the frames hold exactly the image's bytes.
// Otherwise (no block map, not zstd, no seek table, frames too large) it returns nil and the image is
// read as a stream.
func seekTable(in io.ReaderAt, fileSize int64, algo string, bm *disk.BlockMap) ([]disk.ZstdFrame, error) {
	if bm == nil || algo != "zstd" {
		return nil, nil
	}
	frames, err := disk.ZstdSeekTable(in, fileSize)
	if err != nil || len(frames) == 0 {
		return nil, err
	}
	var total int64
	for _, f := range frames {
		if f.Size > bufSize {
			return nil, nil
		}
		total += f.Size
	}
	if total != bm.ImageSize {
		return nil, fmt.Errorf("its zstd seek table holds %d bytes, its block map says %d", total, bm.ImageSize)
	}
	return frames, nil
}

// fromFrames writes the spans of a seekable zstd image in, decompressing only the frames that hold
// mapped bytes and skipping the others unread: the holes of a disk image cost nothing.
func (w *writer) fromFrames(in io.ReaderAt, frames []disk.ZstdFrame, spans []span) error {
	return w.run(spanTotal(spans), wantsOf(spans), func(ctx context.Context, free <-chan []byte, full chan<- batch) error {
		defer close(full)
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(bufSize))
		if err != nil {
			return fmt.Errorf("zstd decoder: %w", err)
		}
		defer dec.Close()
		var src []byte
		si := 0
		for i, f := range frames {
			end := f.ImageOff + f.Size
			for si < len(spans) && spans[si].off+spans[si].n <= f.ImageOff {
				si++
			}
			if si == len(spans) {
				return nil
			}
			if spans[si].off >= end {
				continue // nothing mapped in this frame
			}
			buf, err := take(ctx, free)
			if err != nil {
				return err
			}
			if int64(cap(src)) < f.Len {
				src = make([]byte, f.Len)
			}
			src = src[:f.Len]
			if _, err := in.ReadAt(src, f.Off); err != nil {
				return fmt.Errorf("image: zstd frame %d at byte %d: %w", i, f.Off, err)
			}
			out, err := dec.DecodeAll(src, buf[:0])
			if err == nil && int64(len(out)) != f.Size {
				err = fmt.Errorf("%d bytes, its seek table says %d", len(out), f.Size)
			}
			if err != nil {
				return fmt.Errorf("image: zstd frame %d at byte %d: %w", i, f.Off, err)
			}
			if len(out) > 0 && &out[0] != &buf[0] {
				copy(buf, out)
			}
			b := batch{buf: buf}
			for j := si; j < len(spans) && spans[j].off < end; j++ {
				lo, hi := max(spans[j].off, f.ImageOff), min(spans[j].off+spans[j].n, end)
				b.pieces = append(b.pieces, piece{off: lo, lo: int(lo - f.ImageOff), hi: int(hi - f.ImageOff), span: j})
			}
			if err := send(ctx, full, b); err != nil {
				return err
			}
		}
		return nil
	})
}
