package disk

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// BmapBlockSize is the block size of the block maps Bmap writes.
const BmapBlockSize = 4096

// bmapChecksumLen is the length of a hex-encoded sha256 sum.
const bmapChecksumLen = 2 * sha256.Size

// extent is a byte range [Off, Off+Len) of a file.
type extent struct {
	Off, Len int64
}

// blockRanges turns byte extents into inclusive block ranges of block size bs,
// widening each extent to whole blocks and merging ranges that touch.
func blockRanges(exts []extent, bs int64) [][2]int64 {
	var out [][2]int64
	for _, e := range exts {
		first := e.Off / bs
		last := (e.Off + e.Len - 1) / bs
		if n := len(out); n > 0 && first <= out[n-1][1]+1 {
			if last > out[n-1][1] {
				out[n-1][1] = last
			}
			continue
		}
		out = append(out, [2]int64{first, last})
	}
	return out
}

// openMapped opens a regular image file and finds its data extents.
func openMapped(img string) (*os.File, int64, []extent, error) {
	f, err := os.Open(img)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("open image: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, fmt.Errorf("stat image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, nil, fmt.Errorf("image %s: not a regular file", img)
	}
	exts, err := dataExtents(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	return f, fi.Size(), exts, nil
}

// Bmap writes to w a block map (bmap format 2.0, 4096-byte blocks, sha256
// checksums) of the image file img, listing the blocks that hold data, as
// bmaptool copy reads it. progress, if not nil, is called with the bytes of
// mapped blocks hashed so far and their total.
func Bmap(img string, w io.Writer, progress func(done, total int64)) error {
	f, size, exts, err := openMapped(img)
	if err != nil {
		return err
	}
	defer f.Close()
	if size == 0 {
		return fmt.Errorf("image %s: empty", img)
	}
	const bs = BmapBlockSize
	ranges := blockRanges(exts, bs)
	blocks := (size + bs - 1) / bs
	var mapped, mappedBytes int64
	for _, r := range ranges {
		mapped += r[1] - r[0] + 1
		mappedBytes += min((r[1]+1)*bs, size) - r[0]*bs
	}

	var buf bytes.Buffer
	fmt.Fprintf(&buf, "<?xml version=\"1.0\" ?>\n")
	fmt.Fprintf(&buf, "<!-- Block map of %s: the blocks that hold data. -->\n", filepath.Base(img))
	fmt.Fprintf(&buf, "<bmap version=\"2.0\">\n")
	fmt.Fprintf(&buf, "    <ImageSize> %d </ImageSize>\n", size)
	fmt.Fprintf(&buf, "    <BlockSize> %d </BlockSize>\n", bs)
	fmt.Fprintf(&buf, "    <BlocksCount> %d </BlocksCount>\n", blocks)
	fmt.Fprintf(&buf, "    <MappedBlocksCount> %d </MappedBlocksCount>\n", mapped)
	fmt.Fprintf(&buf, "    <ChecksumType> sha256 </ChecksumType>\n")
	fmt.Fprintf(&buf, "    <!-- Computed over this file with the value below set to zeros. -->\n")
	fmt.Fprintf(&buf, "    <BmapFileChecksum> ")
	sumPos := buf.Len()
	fmt.Fprintf(&buf, "%s </BmapFileChecksum>\n", bytes.Repeat([]byte("0"), bmapChecksumLen))
	fmt.Fprintf(&buf, "    <BlockMap>\n")

	if progress == nil {
		progress = func(int64, int64) {}
	}
	progress(0, mappedBytes)
	var done int64
	h := sha256.New()
	for _, r := range ranges {
		h.Reset()
		start := r[0] * bs
		n := min((r[1]+1)*bs, size) - start
		if _, err := io.Copy(h, &progressReader{r: io.NewSectionReader(f, start, n), done: &done, total: mappedBytes, progress: progress}); err != nil {
			return fmt.Errorf("read blocks %d-%d of image: %w", r[0], r[1], err)
		}
		sum := hex.EncodeToString(h.Sum(nil))
		if r[0] == r[1] {
			fmt.Fprintf(&buf, "        <Range chksum=\"%s\"> %d </Range>\n", sum, r[0])
		} else {
			fmt.Fprintf(&buf, "        <Range chksum=\"%s\"> %d-%d </Range>\n", sum, r[0], r[1])
		}
	}
	fmt.Fprintf(&buf, "    </BlockMap>\n</bmap>\n")

	out := buf.Bytes()
	fileSum := sha256.Sum256(out)
	hex.Encode(out[sumPos:sumPos+bmapChecksumLen], fileSum[:])
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("write block map: %w", err)
	}
	return nil
}

// progressReader reports the bytes read through it to a progress callback.
type progressReader struct {
	r        io.Reader
	done     *int64
	total    int64
	progress func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		*p.done += int64(n)
		p.progress(*p.done, p.total)
	}
	return n, err
}
