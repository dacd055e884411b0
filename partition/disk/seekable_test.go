package disk

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// seekableImage is a test image: zero frames, random data, a short last frame.
func seekableImage(t testing.TB) []byte {
	img := make([]byte, 5*seekFrameSize+12345)
	rng := rand.New(rand.NewSource(1))
	rng.Read(img[seekFrameSize+100 : 2*seekFrameSize+7])
	rng.Read(img[4*seekFrameSize:])
	return img
}

func compressSeekable(t testing.TB, img []byte) []byte {
	var out bytes.Buffer
	z, err := newSeekableZstd(&out)
	if err != nil {
		t.Fatal(err)
	}
	for p := img; len(p) > 0; { // odd write sizes across frame boundaries
		k := min(len(p), 333333)
		if _, err := z.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestSeekableZstd(t *testing.T) {
	img := seekableImage(t)
	c := compressSeekable(t, img)

	// Any zstd stream decoder reads it as the image: klauspost's, and the zstd program when present.
	dec, err := zstd.NewReader(bytes.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(dec)
	dec.Close()
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("stream decode: %d bytes, err %v; want the %d-byte image", len(got), err, len(img))
	}
	if zst, err := exec.LookPath("zstd"); err == nil {
		f := filepath.Join(t.TempDir(), "img.zst")
		if err := os.WriteFile(f, c, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(zst, "-d", "-c", "-q", f).Output()
		if err != nil || !bytes.Equal(out, img) {
			t.Fatalf("zstd -d: %d bytes, err %v; want the image", len(out), err)
		}
	}

	// The seek table lists every frame; each decodes alone to its part of the image.
	frames, err := ZstdSeekTable(bytes.NewReader(c), int64(len(c)))
	if err != nil {
		t.Fatal(err)
	}
	if want := (len(img) + seekFrameSize - 1) / seekFrameSize; len(frames) != want {
		t.Fatalf("%d frames, want %d", len(frames), want)
	}
	d, _ := zstd.NewReader(nil)
	defer d.Close()
	for i, f := range frames {
		part, err := d.DecodeAll(c[f.Off:f.Off+f.Len], nil)
		if err != nil || !bytes.Equal(part, img[f.ImageOff:f.ImageOff+f.Size]) {
			t.Fatalf("frame %d (%+v): %d bytes, err %v", i, f, len(part), err)
		}
	}
	if last := frames[len(frames)-1]; last.ImageOff+last.Size != int64(len(img)) {
		t.Fatalf("frames end at %d, image %d", last.ImageOff+last.Size, len(img))
	}
	// All-zero frames are encoded once and are small.
	if frames[0].Len > 512 || !bytes.Equal(c[frames[0].Off:frames[0].Off+frames[0].Len], c[frames[3].Off:frames[3].Off+frames[3].Len]) {
		t.Fatalf("zero frames: %d and %d bytes, want the same small frame", frames[0].Len, frames[3].Len)
	}
}

func TestZstdSeekTableRefuses(t *testing.T) {
	c := compressSeekable(t, seekableImage(t))
	n := len(c)
	plain := zstd.NewWriter
	enc, _ := plain(nil)
	stream := enc.EncodeAll(seekableImage(t), nil)
	if f, err := ZstdSeekTable(bytes.NewReader(stream), int64(len(stream))); f != nil || err != nil {
		t.Fatalf("a plain zstd stream: %v, %v; want no table and no error", f, err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(b []byte) []byte
		fails bool
	}{
		{"truncated before the table", func(b []byte) []byte { return append(b[:100:100], b[n-seekFooterSize:]...) }, true},
		{"too many frames", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[n-9:], 1<<26); return b }, true},
		{"reserved bits", func(b []byte) []byte { b[n-5] = 0x04; return b }, true},
		{"frame size field", func(b []byte) []byte {
			tbl := n - (8 + 8*6 + seekFooterSize)
			binary.LittleEndian.PutUint32(b[tbl+4:], 3)
			return b
		}, true},
		{"a frame one byte longer", func(b []byte) []byte {
			e := n - (8*6 + seekFooterSize)
			binary.LittleEndian.PutUint32(b[e:], binary.LittleEndian.Uint32(b[e:])+1)
			return b
		}, true},
		{"footer magic gone", func(b []byte) []byte { b[n-1] ^= 0xff; return b }, false},
	} {
		b := tc.edit(append([]byte(nil), c...))
		f, err := ZstdSeekTable(bytes.NewReader(b), int64(len(b)))
		if tc.fails && err == nil || !tc.fails && (err != nil || f != nil) {
			t.Errorf("%s: frames %d, err %v", tc.name, len(f), err)
		}
	}
}

func FuzzZstdSeekTable(f *testing.F) {
	f.Add(compressSeekable(f, make([]byte, 3*seekFrameSize+5)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		frames, err := ZstdSeekTable(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		var off int64
		for _, fr := range frames {
			if fr.Off != off || fr.Len <= 0 || fr.Off+fr.Len > int64(len(b)) || fr.Size < 0 || fr.Size > maxSeekFrameBytes {
				t.Fatalf("frame %+v out of the file of %d bytes", fr, len(b))
			}
			off += fr.Len
		}
	})
}
