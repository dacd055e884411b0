package config

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"
)

func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x * 40), uint8(y * 60), 200, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withIHDRSize returns a copy of a PNG whose IHDR claims w x h pixels, with a correct chunk CRC.
func withIHDRSize(data []byte, w, h uint32) []byte {
	out := bytes.Clone(data)
	binary.BigEndian.PutUint32(out[16:], w)
	binary.BigEndian.PutUint32(out[20:], h)
	binary.BigEndian.PutUint32(out[29:], crc32.ChecksumIEEE(out[12:29]))
	return out
}

func TestValidatePNG(t *testing.T) {
	good := testPNG(t, 5, 4)
	iend := bytes.LastIndex(good, []byte("IEND"))
	corrupt := bytes.Clone(good)
	corrupt[iend-6] ^= 0xff // inside the IDAT chunk (before its CRC)
	huge := append(bytes.Clone(pngSignature), make([]byte, MaxSplashBytes)...)
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"valid", good, ""},
		{"valid with data after IEND", append(bytes.Clone(good), "junk"...), ""},
		{"1x1", testPNG(t, 1, 1), ""},

		{"empty", nil, "not a PNG file"},
		{"jpeg", []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), "not a PNG file"},
		{"text", []byte("hello, this is not an image at all"), "not a PNG file"},
		{"signature only", pngSignature, "PNG truncated"},
		{"truncated header", good[:20], "PNG truncated"},
		{"truncated after header", good[:40], "PNG truncated"},
		{"truncated in data", good[:len(good)-20], "PNG truncated"},
		{"no IEND", good[:iend-4], "PNG truncated"},
		{"corrupt data", corrupt, "CRC"},
		{"IHDR not first", append(append(bytes.Clone(pngSignature), 0, 0, 0, 0, 'I', 'E', 'N', 'D'), make([]byte, 30)...), "does not start with an IHDR chunk"},
		{"huge width", withIHDRSize(good, 100000, 4), "100000x4 pixels, 1x1 to 8192x8192"},
		{"huge height", withIHDRSize(good, 5, 8193), "5x8193 pixels"},
		{"both max+1", withIHDRSize(good, 8193, 8193), "8193x8193 pixels"},
		{"zero width", withIHDRSize(good, 0, 4), "0x4 pixels"},
		{"over 16 MiB", huge, "at most 16777216 (16 MiB)"},
		{"dimensions lie", withIHDRSize(good, 50, 40), "splash image:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePNG(tc.data)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestValidatePNGMaxDimensionHeader checks that an 8192x8192 header passes the size check: the file
// then fails only in decoding (its data is for 5x4 pixels).
func TestValidatePNGMaxDimensionHeader(t *testing.T) {
	err := ValidatePNG(withIHDRSize(testPNG(t, 5, 4), 8192, 8192))
	if err == nil || strings.Contains(err.Error(), "pixels, 1x1") {
		t.Fatalf("error %v, want a decoding error", err)
	}
}
