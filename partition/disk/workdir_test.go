//go:build unix

package disk

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWorkDirSweepsStale: a killed run's work directory (old, unlocked) is removed by the next run; a
// held one and a young one are left; release removes the run's own.
func TestWorkDirSweepsStale(t *testing.T) {
	parent := t.TempDir()
	mk := func(name string, age time.Duration) string {
		p := filepath.Join(parent, name)
		if err := os.MkdirAll(filepath.Join(p, "staged"), 0o700); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := mk(".x.img.hostos-111", time.Hour)
	held := mk(".x.img.hostos-222", time.Hour)
	young := mk(".x.img.hostos-333", 0)
	other := mk("unrelated", time.Hour)
	f, err := os.Open(held)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	dir, release, err := WorkDir(parent, ".x.img.hostos-")
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{stale: false, held: true, young: true, other: true, dir: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
	// The run's own directory is held while it works.
	g, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(g.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		t.Error("the work directory is not locked while in use")
	}
	g.Close()
	release()
	if _, err := os.Stat(dir); err == nil {
		t.Error("release left the work directory")
	}
}
