//go:build unix

package disk

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hostos/hostos/tests/testtool"
)

func TestCompressRoundTrip(t *testing.T) {
	const mib = 1 << 20
	xzBin := testtool.Need(t, "xz")
	zstdBin := testtool.Need(t, "zstd")
	layouts := []struct {
		name   string
		size   int64
		chunks []chunk
	}{
		{"sparse", 40 * mib, []chunk{{0, 4096}, {3*mib + 17, 2 * mib}, {39 * mib, mib}}},
		{"all hole", 5*mib + 3, nil},
		{"dense", 3 * mib, []chunk{{0, 3 * mib}}},
		{"data at end", 2*mib + 1, []chunk{{2*mib - 10, 11}}},
	}
	codecs := []struct {
		name, algo, xzPath, decoder string
	}{
		{"zstd", "zst", "", zstdBin},
		{"xz program", "xz", xzBin, xzBin},
		{"xz go", "xz", "", xzBin},
	}
	for i, l := range layouts {
		for _, c := range codecs {
			t.Run(l.name+"/"+c.name, func(t *testing.T) {
				dir := t.TempDir()
				img := filepath.Join(dir, "disk.img")
				makeSparse(t, img, l.size, l.chunks, uint64(i))
				packed := filepath.Join(dir, "disk.img."+c.algo)
				f, err := os.Create(packed)
				if err != nil {
					t.Fatal(err)
				}
				var done, total int64
				err = compress(context.Background(), img, f, c.algo, c.xzPath, func(d, tot int64) { done, total = d, tot })
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					t.Fatal(err)
				}
				if done != l.size || total != l.size {
					t.Errorf("progress ended at %d of %d, want %d", done, total, l.size)
				}
				out := filepath.Join(dir, "unpacked.img")
				cmd := exec.Command(c.decoder, "-d", "-c", packed)
				o, err := os.Create(out)
				if err != nil {
					t.Fatal(err)
				}
				cmd.Stdout = o
				if err := cmd.Run(); err != nil {
					t.Fatalf("%s -d: %v", c.decoder, err)
				}
				o.Close()
				if fileSum(t, img) != fileSum(t, out) {
					t.Fatal("decompressed image differs from the original")
				}
			})
		}
	}
}

func TestCompressPublic(t *testing.T) {
	testtool.Need(t, "zstd")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	makeSparse(t, img, 1<<20, []chunk{{100, 100}}, 3)
	for _, algo := range []string{"zst", "xz"} {
		packed := filepath.Join(dir, "disk."+algo)
		f, err := os.Create(packed)
		if err != nil {
			t.Fatal(err)
		}
		if err := Compress(context.Background(), img, f, algo, nil); err != nil {
			t.Fatalf("%s: %v", algo, err)
		}
		f.Close()
		if fi, err := os.Stat(packed); err != nil || fi.Size() == 0 || fi.Size() > 64<<10 {
			t.Errorf("%s: compressed size %v, %v", algo, fi.Size(), err)
		}
	}
}

func TestCompressErrors(t *testing.T) {
	xzBin := testtool.Need(t, "xz")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	makeSparse(t, img, 64<<20, []chunk{{0, 1 << 20}}, 5)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name, img, algo, xzPath string
		ctx                     context.Context
		want                    error
	}{
		{"unknown algorithm", img, "gz", "", context.Background(), nil},
		{"missing image", filepath.Join(dir, "nope"), "zst", "", context.Background(), os.ErrNotExist},
		{"canceled zstd", img, "zst", "", canceled, context.Canceled},
		{"canceled xz program", img, "xz", xzBin, canceled, context.Canceled},
		{"canceled xz go", img, "xz", "", canceled, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = compress(tc.ctx, tc.img, f, tc.algo, tc.xzPath, nil)
			if err == nil {
				t.Fatal("compress succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

// allocated is the number of bytes of disk a file takes.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestSparseCopy(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name   string
		size   int64
		chunks []chunk
	}{
		{"sparse", 256 * mib, []chunk{{0, 4096}, {100 * mib, 3 * mib}, {256*mib - 1, 1}}},
		{"all hole", 32 * mib, nil},
		{"dense", 2 * mib, []chunk{{0, 2 * mib}}},
		{"empty", 0, nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src.img")
			dst := filepath.Join(dir, "dst.img")
			makeSparse(t, src, tc.size, tc.chunks, uint64(i))
			// An existing destination is replaced, not merged.
			makeSparse(t, dst, tc.size+mib, []chunk{{tc.size, 4096}}, 99)
			if err := SparseCopy(dst, src); err != nil {
				t.Fatal(err)
			}
			if fileSum(t, src) != fileSum(t, dst) {
				t.Fatal("copy differs from the source")
			}
			if a, b := allocated(t, dst), allocated(t, src); a > b {
				t.Errorf("copy allocates %d bytes, source %d: holes were filled", a, b)
			}
		})
	}
	t.Run("same file", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "src.img")
		makeSparse(t, src, mib, []chunk{{0, 10}}, 1)
		if err := SparseCopy(src, src); err == nil {
			t.Fatal("copying a file onto itself succeeded")
		}
		if fi, err := os.Stat(src); err != nil || fi.Size() != mib {
			t.Fatalf("source damaged: %v %v", fi, err)
		}
	})
}

// BenchmarkCompress compresses the image named by HOSTOS_BENCH_IMAGE with each
// codec, e.g. HOSTOS_BENCH_IMAGE=/tmp/root.img go test -bench Compress -benchtime 1x.
func BenchmarkCompress(b *testing.B) {
	img := os.Getenv("HOSTOS_BENCH_IMAGE")
	if img == "" {
		b.Skip("HOSTOS_BENCH_IMAGE not set")
	}
	xzBin, _ := exec.LookPath("xz")
	fi, err := os.Stat(img)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, algo, xzPath string }{
		{"zstd", "zst", ""},
		{"xz-program", "xz", xzBin},
		{"xz-go", "xz", ""},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.algo == "xz" && c.name == "xz-program" && xzBin == "" {
				b.Skip("xz not installed")
			}
			b.SetBytes(fi.Size())
			for b.Loop() {
				var n countWriter
				if err := compress(context.Background(), img, &n, c.algo, c.xzPath, nil); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(n), "out-bytes")
			}
		})
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
