package config

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// Splash image limits: ValidatePNG refuses larger files and images before decoding any pixels.
const (
	MaxSplashBytes     = 16 << 20
	MaxSplashDimension = 8192
)

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// ValidatePNG checks that data is one complete PNG the boot splash can show: the PNG signature, an
// IHDR chunk first with a width and height of 1 to 8192 pixels and a valid colour type and bit depth,
// every chunk's CRC, a palette where the colour type needs one, image data that inflates to exactly
// the size the header implies, and IEND last. Pixels are inflated into a counter, never into memory,
// so a maximal image costs no more than a tiny one. Files over 16 MiB are refused unread.
func ValidatePNG(data []byte) error {
	if len(data) > MaxSplashBytes {
		return fmt.Errorf("splash image: %d bytes, at most %d (16 MiB) are allowed", len(data), MaxSplashBytes)
	}
	if !bytes.HasPrefix(data, pngSignature) {
		return errors.New("splash image: not a PNG file (no PNG signature)")
	}
	var (
		hdr         pngHeader
		idat        [][]byte
		idatDone    bool
		havePalette bool
	)
	rest := data[len(pngSignature):]
	for first := true; ; first = false {
		if len(rest) < 12 {
			return errors.New("splash image: PNG truncated (unexpected end of file)")
		}
		n := binary.BigEndian.Uint32(rest)
		typ := string(rest[4:8])
		if int64(n) > int64(len(rest))-12 {
			return errors.New("splash image: PNG truncated (unexpected end of file)")
		}
		body := rest[8 : 8+n]
		if first && typ != "IHDR" {
			return errors.New("splash image: PNG does not start with an IHDR chunk")
		}
		if crc32.ChecksumIEEE(rest[4:8+n]) != binary.BigEndian.Uint32(rest[8+n:]) {
			return fmt.Errorf("splash image: PNG chunk %q fails its CRC check", typ)
		}
		rest = rest[12+n:]
		switch {
		case typ == "IHDR":
			if !first {
				return errors.New("splash image: PNG has a second IHDR chunk")
			}
			var err error
			if hdr, err = parseIHDR(body); err != nil {
				return err
			}
		case typ == "PLTE":
			havePalette = true
		case typ == "IDAT":
			if idatDone {
				return errors.New("splash image: PNG image data chunks are not consecutive")
			}
			idat = append(idat, body)
		case typ == "IEND":
			// Bytes after IEND are ignored, as every decoder does.
			if hdr.colorType == 3 && !havePalette {
				return errors.New("splash image: PNG palette image without a palette")
			}
			if len(idat) == 0 {
				return errors.New("splash image: PNG holds no image data")
			}
			return hdr.checkData(idat)
		default:
			if typ[0]&0x20 == 0 { // an unknown critical chunk: a viewer must refuse the image
				return fmt.Errorf("splash image: PNG has unknown critical chunk %q", typ)
			}
		}
		if len(idat) > 0 && typ != "IDAT" {
			idatDone = true
		}
	}
}

type pngHeader struct {
	width, height int64
	depth         int64
	colorType     byte
	interlaced    bool
	bitsPerPixel  int64
}

func parseIHDR(b []byte) (pngHeader, error) {
	if len(b) != 13 {
		return pngHeader{}, errors.New("splash image: PNG IHDR chunk has the wrong length")
	}
	h := pngHeader{width: int64(binary.BigEndian.Uint32(b)), height: int64(binary.BigEndian.Uint32(b[4:])),
		depth: int64(b[8]), colorType: b[9], interlaced: b[12] == 1}
	if h.width == 0 || h.height == 0 || h.width > MaxSplashDimension || h.height > MaxSplashDimension {
		return h, fmt.Errorf("splash image: %dx%d pixels, 1x1 to %dx%d are allowed", h.width, h.height, MaxSplashDimension, MaxSplashDimension)
	}
	channels := map[byte]int64{0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[b[9]]
	depths := map[byte]string{0: "1 2 4 8 16", 2: "8 16", 3: "1 2 4 8", 4: "8 16", 6: "8 16"}[b[9]]
	if channels == 0 || !strings.Contains(" "+depths+" ", fmt.Sprintf(" %d ", h.depth)) {
		return h, fmt.Errorf("splash image: PNG colour type %d with bit depth %d is not valid", b[9], h.depth)
	}
	if b[10] != 0 || b[11] != 0 || b[12] > 1 {
		return h, errors.New("splash image: PNG uses an unknown compression, filter or interlace method")
	}
	h.bitsPerPixel = channels * h.depth
	return h, nil
}

// rawSize is the size of the filtered scanlines the image data must inflate to.
func (h pngHeader) rawSize() int64 {
	rows := func(w, hgt int64) int64 {
		if w == 0 || hgt == 0 {
			return 0
		}
		return hgt * (1 + (w*h.bitsPerPixel+7)/8)
	}
	if !h.interlaced {
		return rows(h.width, h.height)
	}
	// Adam7: each pass takes every dx-th pixel from x0 in every dy-th row from y0.
	var n int64
	for _, p := range [7][4]int64{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}} {
		x0, y0, dx, dy := p[0], p[1], p[2], p[3]
		n += rows((h.width-x0+dx-1)/dx, (h.height-y0+dy-1)/dy)
	}
	return n
}

// checkData inflates the concatenated image data into a counter.
func (h pngHeader) checkData(idat [][]byte) error {
	readers := make([]io.Reader, len(idat))
	for i, b := range idat {
		readers[i] = bytes.NewReader(b)
	}
	zr, err := zlib.NewReader(io.MultiReader(readers...))
	if err != nil {
		return fmt.Errorf("splash image: PNG image data: %w", err)
	}
	want := h.rawSize()
	n, err := io.Copy(io.Discard, io.LimitReader(zr, want+1))
	if err != nil {
		return fmt.Errorf("splash image: PNG image data: %w", err)
	}
	if n != want {
		return fmt.Errorf("splash image: PNG image data holds %d bytes, the header implies %d", n, want)
	}
	return nil
}
