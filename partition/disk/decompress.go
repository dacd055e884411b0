package disk

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Compression names the compression of an image file by its magic bytes: "zstd", "xz", "gzip", "zip",
// or "" for a raw image.
func Compression(r io.ReaderAt) (string, error) {
	var b [6]byte
	n, err := r.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	h := b[:n]
	switch {
	case bytes.HasPrefix(h, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd", nil
	case bytes.HasPrefix(h, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return "xz", nil
	case bytes.HasPrefix(h, []byte{0x1f, 0x8b}):
		return "gzip", nil
	case bytes.HasPrefix(h, []byte{'P', 'K', 3, 4}):
		return "zip", nil
	}
	return "", nil
}

// Decompress writes the image inside the compressed file src (zstd, xz, gzip, or the one .img/.raw
// member of a zip archive) to the new file dst, leaving all-zero blocks as holes. progress, if not nil,
// gets the compressed bytes consumed and the compressed size.
func Decompress(ctx context.Context, src, dst string, progress func(done, total int64)) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	dec, err := NewDecompressed(in, fi.Size(), src, progress)
	if err != nil {
		return err
	}
	defer dec.Close()
	if dec.Compression == "" {
		return fmt.Errorf("%s: not a compressed image", src)
	}
	var r io.Reader = dec
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	size, err := writeSparse(ctx, out, r)
	if err != nil {
		return fmt.Errorf("decompress %s: %w", src, err)
	}
	if size == 0 {
		return fmt.Errorf("decompress %s: empty image", src)
	}
	return out.Truncate(size)
}

// zipImage picks the disk image member of a zip archive: the only file, or the only .img/.raw file.
func zipImage(r io.ReaderAt, size int64, name string) (*zip.File, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var files, images []*zip.File
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		files = append(files, f)
		if n := strings.ToLower(f.Name); strings.HasSuffix(n, ".img") || strings.HasSuffix(n, ".raw") {
			images = append(images, f)
		}
	}
	switch {
	case len(files) == 1:
		return files[0], nil
	case len(images) == 1:
		return images[0], nil
	}
	return nil, fmt.Errorf("%s: zip archive holds %d files and %d .img files; expected one image", name, len(files), len(images))
}

// writeSparse copies r to out, seeking over all-zero chunks so that they stay holes. It returns the
// number of bytes r yielded.
func writeSparse(ctx context.Context, out *os.File, r io.Reader) (int64, error) {
	const chunk = 64 << 10
	buf := make([]byte, copyChunk)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		n, rerr := io.ReadFull(r, buf)
		for i := 0; i < n; i += chunk {
			b := buf[i:min(i+chunk, n)]
			if !isZero(b) {
				if _, err := out.WriteAt(b, off+int64(i)); err != nil {
					return off, err
				}
			}
		}
		off += int64(n)
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return off, nil
		}
		if rerr != nil {
			return off, rerr
		}
	}
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
