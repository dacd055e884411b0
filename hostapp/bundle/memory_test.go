package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// zeroHeavy yields size bytes of mostly zeros with a random block every MiB, like a sparse filesystem
// image, without holding them.
type zeroHeavy struct {
	size, off int64
	rng       *rand.Rand
}

func (z *zeroHeavy) Read(p []byte) (int, error) {
	if z.off >= z.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), z.size-z.off)]
	for i := range p {
		if (z.off+int64(i))%(1<<20) < 4096 {
			p[i] = byte(z.rng.Uint32())
		} else {
			p[i] = 0
		}
	}
	z.off += int64(len(p))
	return len(p), nil
}

// TestStreamingMemory streams a 200 MiB image through Write, a pipe, NewReader and Rootfs and checks that
// the heap stays far below the payload size.
func TestStreamingMemory(t *testing.T) {
	const size = 200 << 20
	const limit = 64 << 20
	stored := filepath.Join(t.TempDir(), "rootfs.zst")
	f, err := os.Create(stored)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src := &zeroHeavy{size: size, rng: rand.New(rand.NewChaCha8([32]byte{9}))}
	rootfs, err := compressImage(t.Context(), src, size, f, func(int64, int64) {})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MiB image stored in %d KiB", size>>20, rootfs.Size>>10)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	pub, priv := testKey(t, 1)
	m := Metadata{Format: FormatVersion, DeviceType: "genericx86-64-ext", Arch: "amd64", Version: "1", Created: testCreated, Rootfs: rootfs}

	runtime.GC()
	var peak uint64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	sample()
	base := peak

	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(Write(pw, m, f, nil, priv)) }()
	r, err := NewReader(pr, WithKeys(pub))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := r.Rootfs()
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var n, next int64
	for {
		k, err := rd.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if n >= next {
			sample()
			next += 4 << 20
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	sample()
	if n != size || hex.EncodeToString(h.Sum(nil)) != rootfs.ImageSHA256 {
		t.Fatalf("read %d bytes, want %d with the image's digest", n, size)
	}
	t.Logf("heap in use: %d KiB before, %d KiB at most while streaming", base>>10, peak>>10)
	if peak > limit {
		t.Errorf("heap in use reached %d MiB streaming a %d MiB image, want under %d MiB", peak>>20, size>>20, limit>>20)
	}
}
