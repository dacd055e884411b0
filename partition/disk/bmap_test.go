package disk

import (
	"bytes"
	"crypto/sha256"
	"encoding/xml"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostos/hostos/tests/testtool"
)

// chunk is data written at an offset of a sparse test image.
type chunk struct {
	off int64
	n   int
}

// makeSparse creates a sparse file of the given size holding seeded random
// data at each chunk and holes elsewhere.
func makeSparse(t *testing.T, path string, size int64, chunks []chunk, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, c := range chunks {
		b := make([]byte, c.n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(b, c.off); err != nil {
			t.Fatal(err)
		}
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// bmapDoc is the part of a bmap file the tests check.
type bmapDoc struct {
	Version     string `xml:"version,attr"`
	ImageSize   string
	BlockSize   string
	BlocksCount string
	Mapped      string   `xml:"MappedBlocksCount"`
	Ranges      []string `xml:"BlockMap>Range"`
}

func TestBmapCopy(t *testing.T) {
	bmaptool := testtool.Need(t, "bmaptool")
	const mib = 1 << 20
	tests := []struct {
		name   string
		size   int64
		chunks []chunk
	}{
		{"ranges", 64 * mib, []chunk{{0, 4096}, {mib + 100, 3 * 4096}, {10 * mib, 2 * mib}, {64*mib - 4096, 4096}}},
		{"partial last block", 8*mib + 1000, []chunk{{512, 512}, {8 * mib, 1000}}},
		{"adjacent blocks merge", 4 * mib, []chunk{{4096, 4096}, {8192, 10}, {2 * mib, 1}}},
		{"all hole", 4 * mib, nil},
		{"unaligned data", 3*mib + 7, []chunk{{3, 5}, {3 * mib, 7}}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "disk.img")
			makeSparse(t, img, tc.size, tc.chunks, uint64(i))
			var bm bytes.Buffer
			var last, total int64
			if err := Bmap(img, &bm, func(d, tot int64) { last, total = d, tot }); err != nil {
				t.Fatal(err)
			}
			if last != total {
				t.Errorf("progress ended at %d of %d", last, total)
			}
			var doc bmapDoc
			if err := xml.Unmarshal(bm.Bytes(), &doc); err != nil {
				t.Fatalf("bmap is not XML: %v\n%s", err, bm.String())
			}
			if doc.Version != "2.0" {
				t.Errorf("version %q, want 2.0", doc.Version)
			}
			for _, c := range tc.chunks {
				if !rangesCover(t, doc.Ranges, c.off/4096, (c.off+int64(c.n)-1)/4096) {
					t.Errorf("ranges %v miss data at %d+%d", doc.Ranges, c.off, c.n)
				}
			}
			ref, err := exec.Command(bmaptool, "create", img).Output()
			if err != nil {
				t.Fatalf("bmaptool create: %v", err)
			}
			var want bmapDoc
			if err := xml.Unmarshal(ref, &want); err != nil {
				t.Fatalf("bmaptool create output: %v", err)
			}
			if strings.TrimSpace(want.ImageSize) == "" || len(want.Ranges) == 0 && len(tc.chunks) > 0 {
				t.Fatalf("bmaptool create output not understood:\n%s", ref)
			}
			if got, exp := summary(doc), summary(want); got != exp {
				t.Errorf("block map differs from bmaptool create's:\n got %s\nwant %s", got, exp)
			}
			bmapPath := filepath.Join(dir, "disk.bmap")
			if err := os.WriteFile(bmapPath, bm.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "copy.img")
			if msg, err := run(t, bmaptool, "copy", "--bmap", bmapPath, img, out); err != nil {
				t.Fatalf("bmaptool copy: %v\n%s\n%s", err, msg, bm.String())
			}
			if fileSum(t, img) != fileSum(t, out) {
				t.Fatal("bmaptool copy differs from the image")
			}
		})
	}
}

// summary renders the sizes and ranges of a bmap for comparison.
func summary(d bmapDoc) string {
	f := strings.Fields
	return fmt.Sprint(f(d.ImageSize), f(d.BlockSize), f(d.BlocksCount), f(d.Mapped), strings.Fields(strings.Join(d.Ranges, " ")))
}

// rangesCover tells whether the bmap ranges hold every block of [first, last].
func rangesCover(t *testing.T, ranges []string, first, last int64) bool {
	t.Helper()
	for b := first; b <= last; b++ {
		found := false
		for _, r := range ranges {
			var lo, hi int64
			r = strings.TrimSpace(r)
			if n, _ := fmt.Sscanf(r, "%d-%d", &lo, &hi); n != 2 {
				if n, _ := fmt.Sscanf(r, "%d", &lo); n != 1 {
					t.Fatalf("bad range %q", r)
				}
				hi = lo
			}
			if lo <= b && b <= hi {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func TestBmapDetectsCorruption(t *testing.T) {
	bmaptool := testtool.Need(t, "bmaptool")
	tests := []struct {
		name    string
		corrupt func(t *testing.T, img, bmapPath string)
	}{
		{"image data", func(t *testing.T, img, _ string) {
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := make([]byte, 1)
			if _, err := f.ReadAt(b, 1<<20+10); err != nil {
				t.Fatal(err)
			}
			b[0] ^= 0xff
			if _, err := f.WriteAt(b, 1<<20+10); err != nil {
				t.Fatal(err)
			}
		}},
		{"bmap file", func(t *testing.T, _, bmapPath string) {
			b, err := os.ReadFile(bmapPath)
			if err != nil {
				t.Fatal(err)
			}
			b = bytes.Replace(b, []byte("<BlockSize> 4096"), []byte("<BlockSize>  4096"), 1)
			if err := os.WriteFile(bmapPath, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "disk.img")
			makeSparse(t, img, 16<<20, []chunk{{0, 8192}, {1 << 20, 64 << 10}}, 7)
			var bm bytes.Buffer
			if err := Bmap(img, &bm, nil); err != nil {
				t.Fatal(err)
			}
			bmapPath := filepath.Join(dir, "disk.bmap")
			if err := os.WriteFile(bmapPath, bm.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			tc.corrupt(t, img, bmapPath)
			msg, err := run(t, bmaptool, "copy", "--bmap", bmapPath, img, filepath.Join(dir, "copy.img"))
			if err == nil {
				t.Fatalf("bmaptool copy accepted a corrupted %s:\n%s", tc.name, msg)
			}
			if !strings.Contains(msg, "checksum mismatch") {
				t.Errorf("bmaptool failed without a checksum mismatch:\n%s", msg)
			}
		})
	}
}

func TestBmapRejects(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.img")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{empty, dir, filepath.Join(dir, "missing.img")} {
		if err := Bmap(path, &bytes.Buffer{}, nil); err == nil {
			t.Errorf("Bmap(%s) succeeded", path)
		}
	}
}
