package disk

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Extent is a byte range [Off, Off+Len) of an image.
type Extent = extent

// DataExtents lists the data ranges of the regular file f, whose size is size, by SEEK_DATA and SEEK_HOLE.
// A filesystem without hole support reports the whole file as data.
func DataExtents(f *os.File, size int64) ([]Extent, error) { return dataExtents(f, size) }

// BlockRanges turns byte extents into inclusive ranges of blocks of bs bytes, widening each extent to whole
// blocks and merging ranges that touch.
func BlockRanges(exts []Extent, bs int64) [][2]int64 { return blockRanges(exts, bs) }

// Decompressed is the image inside a compressed (zstd, xz, gzip, zip) or raw file, read as a stream.
type Decompressed struct {
	io.Reader
	// Compression is "zstd", "xz", "gzip", "zip", or "" for a raw image.
	Compression string
	// Size is the image's size when the container states it (raw file, zip member), else -1.
	Size   int64
	closer []func() error
}

// Close releases the decompressor; it does not close the file.
func (d *Decompressed) Close() error {
	var first error
	for i := len(d.closer) - 1; i >= 0; i-- {
		if err := d.closer[i](); err != nil && first == nil {
			first = err
		}
	}
	d.closer = nil
	return first
}

// NewDecompressed reads the image in the file f, of size bytes, named name in errors: the decompressed
// stream of a zstd, xz or gzip file or of a zip archive's one image member, or the file itself when it is
// not compressed. progress, if not nil, gets the file bytes consumed and the file's size (for a zip, the
// member's uncompressed bytes and size). The stream uses little memory: one decoder window.
func NewDecompressed(f *os.File, size int64, name string, progress func(done, total int64)) (*Decompressed, error) {
	algo, err := Compression(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	var done int64
	pr := &progressReader{r: bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20), done: &done, total: size, progress: progress}
	d := &Decompressed{Compression: algo, Size: -1}
	switch algo {
	case "zstd":
		zr, err := zstd.NewReader(pr, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		d.Reader, d.closer = zr, []func() error{func() error { zr.Close(); return nil }}
	case "xz":
		xr, err := xz.NewReader(pr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		d.Reader = xr
	case "gzip":
		gr, err := gzip.NewReader(pr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		d.Reader, d.closer = gr, []func() error{gr.Close}
	case "zip":
		zf, err := zipImage(f, size, name)
		if err != nil {
			return nil, err
		}
		rc, err := zf.Open()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, zf.Name, err)
		}
		d.Size = int64(zf.UncompressedSize64)
		d.Reader = &progressReader{r: rc, done: &done, total: d.Size, progress: progress}
		d.closer = []func() error{rc.Close}
	default:
		d.Reader, d.Size = pr, size
	}
	return d, nil
}
