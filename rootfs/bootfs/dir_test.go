//go:build unix

package bootfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDirStaysInside: a symlinked subdirectory or file that leads out of the boot directory is refused
// for every operation with ErrEscapes, and nothing outside is read, written or removed; links that stay
// inside keep working.
func TestDirStaysInside(t *testing.T) {
	base := t.TempDir()
	boot := filepath.Join(base, "boot")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{boot, outside, filepath.Join(boot, "real")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(outside, "resin-wifi")
	if err := os.WriteFile(secret, []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"system-connections": "../outside",
		"abs":                outside,
		"file.json":          secret,
		"inside":             "real",
	} {
		if err := os.Symlink(target, filepath.Join(boot, link)); err != nil {
			t.Fatal(err)
		}
	}
	d := Dir(boot)
	now := time.Now()
	ops := map[string]func() error{
		"read":        func() error { _, err := d.ReadFile("/system-connections/resin-wifi"); return err },
		"read abs":    func() error { _, err := d.ReadFile("/abs/resin-wifi"); return err },
		"read file":   func() error { _, err := d.ReadFile("/file.json"); return err },
		"read dotdot": func() error { _, err := d.ReadFile("/../outside/resin-wifi"); return err },
		"write":       func() error { return d.WriteFile("/system-connections/resin-wifi", []byte("x"), now) },
		"write new":   func() error { return d.WriteFile("/system-connections/new", []byte("x"), now) },
		"write file":  func() error { return d.WriteFile("/file.json", []byte("x"), now) },
		"mkdir":       func() error { return d.MkdirAll("/system-connections/sub", now) },
		"remove":      func() error { return d.Remove("/system-connections/resin-wifi") },
		"modtime":     func() error { _, err := d.ModTime("/system-connections/resin-wifi"); return err },
	}
	for name, op := range ops {
		err := op()
		if name == "read dotdot" {
			// "/.." is the directory itself: the name is cleaned first, and there is no outside/ inside.
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: %v, want not found", name, err)
			}
			continue
		}
		if !errors.Is(err, ErrEscapes) {
			t.Errorf("%s: %v, want ErrEscapes", name, err)
		}
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "outside" {
		t.Fatalf("the file outside changed: %q %v", b, err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Errorf("outside holds %d entries", len(ents))
	}
	// Inside the directory, links work.
	if err := d.WriteFile("/inside/x", []byte("in"), now); err != nil {
		t.Fatal(err)
	}
	if b, err := d.ReadFile("/real/x"); err != nil || string(b) != "in" {
		t.Fatalf("read back %q %v", b, err)
	}
	files, err := List(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0] != "real/x" {
		t.Errorf("List = %v", files)
	}
}

// TestDirReadRefusesSpecialFiles: a FIFO named config.json is refused at once instead of hanging, and a
// directory is not read as a file.
func TestDirReadRefusesSpecialFiles(t *testing.T) {
	boot := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(boot, "config.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(boot, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"/config.json", "/dir"} {
		if _, err := Dir(boot).ReadFile(name); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := Dir(boot).WriteFile("/config.json", []byte("{}"), time.Time{}); err == nil {
		t.Error("WriteFile replaced a FIFO")
	}
}
