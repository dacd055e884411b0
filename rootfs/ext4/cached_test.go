//go:build unix

package ext4

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hostos/hostos/rootfs/tree"
)

// TestCachedReadsAsFS reads the same paths, through symlinks of every kind, with FS and with Cached (twice,
// cold and warm) and wants the same answers.
func TestCachedReadsAsFS(t *testing.T) {
	requireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	for _, d := range []string{"etc/conf.d", "usr/lib/deep/er", "boot/overlays", "empty"} {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{
		"usr/lib/os-release": "ID=x\n", "usr/lib/deep/er/f": "deep", "etc/conf.d/a": "a", "boot/overlays/o.dtbo": "dt",
	} {
		if err := os.WriteFile(filepath.Join(stage, name), []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"etc/os-release": "../usr/lib/os-release", // relative
		"etc/abs":        "/usr/lib/os-release",   // absolute
		"lib":            "usr/lib",               // a directory, used mid-path
		"up":             "..",                    // above the root is the root
		"dangling":       "nowhere",
		"loop":           "loop",
		"etc/deep":       "/lib/deep/er",
	} {
		if err := os.Symlink(target, filepath.Join(stage, link)); err != nil {
			t.Fatal(err)
		}
	}
	staged, err := tree.Scan(stage)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "fs.ext4")
	const size = 8 << 20
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if err := Make(context.Background(), img, 0, size, Options{Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}, staged); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	plain, err := Open(r, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingReaderAt{r: r}
	fresh, err := Open(counted, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	cached := fresh.Cached()
	names := []string{"/", "", "/etc", "/etc/os-release", "/etc/abs", "/lib/os-release", "/lib/deep/er/f", "/etc/deep/f",
		"/etc/deep", "/up/up/etc/conf.d/a", "/dangling", "/dangling/x", "/loop", "/loop/x", "/missing", "/etc/conf.d/a/x",
		"/usr/lib/os-release/x", "/lib", "/lib/", "/empty", "/boot/overlays", "/boot/overlays/o.dtbo", "/etc/../lib/./deep"}
	show := func(v any, err error) string {
		if err != nil {
			return fmt.Sprintf("error (not found: %v)", errors.Is(err, fs.ErrNotExist))
		}
		if fi, ok := v.(fs.FileInfo); ok {
			return fmt.Sprintf("%s %v %d %v %v", fi.Name(), fi.Mode(), fi.Size(), fi.IsDir(), fi.ModTime())
		}
		return fmt.Sprintf("%q", v)
	}
	for round := 0; round < 2; round++ {
		for _, n := range names {
			for _, op := range []struct {
				name     string
				fs       func(string) (any, error)
				cachedFn func(string) (any, error)
			}{
				{"ReadFile", func(n string) (any, error) { return plain.ReadFile(n) }, func(n string) (any, error) { return cached.ReadFile(n) }},
				{"ReadDir", func(n string) (any, error) { return plain.ReadDir(n) }, func(n string) (any, error) { return cached.ReadDir(n) }},
				{"Lstat", func(n string) (any, error) { return plain.Lstat(n) }, func(n string) (any, error) { return cached.Lstat(n) }},
				{"ReadLink", func(n string) (any, error) { return plain.ReadLink(n) }, func(n string) (any, error) { return cached.ReadLink(n) }},
				{"Xattrs", func(n string) (any, error) { return plain.Xattrs(n) }, func(n string) (any, error) { return cached.Xattrs(n) }},
				{"Open", func(n string) (any, error) { return readOpen(plain.Open(n)) }, func(n string) (any, error) { return readOpen(cached.Open(n)) }},
			} {
				want := show(op.fs(n))
				got := show(op.cachedFn(n))
				if got != want {
					t.Errorf("round %d: %s %q: cached %s, FS %s", round, op.name, n, got, want)
				}
			}
		}
	}
	if fi, err := cached.Lstat("/etc/conf.d/a"); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("Lstat: %v, %v; want the file's permission bits 0640", fi, err)
	}
	if b, err := readOpen(cached.Open("/etc/deep/f")); err != nil || string(b) != "deep" {
		t.Errorf("Open /etc/deep/f: %q, %v", b, err)
	}
	for _, n := range []string{"/etc", "/", "/dangling"} {
		if _, err := cached.Open(n); err == nil {
			t.Errorf("Open %s: no error, want one (not a file)", n)
		}
	}
	// Warm, listing a directory and describing an entry read nothing from the image.
	counted.n = 0
	for _, n := range []string{"/lib/deep", "/etc/deep", "/up/etc"} {
		if _, err := cached.ReadDir(n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cached.Lstat("/etc/deep/f"); err != nil {
		t.Fatal(err)
	}
	if counted.n != 0 {
		t.Errorf("warm ReadDir and Lstat read the image %d times, want none", counted.n)
	}
}

// readOpen reads what Open opened to its end.
func readOpen(r io.ReadCloser, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

type countingReaderAt struct {
	r io.ReaderAt
	n int
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.n++
	return c.r.ReadAt(p, off)
}
