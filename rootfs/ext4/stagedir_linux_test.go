package ext4

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hostos/hostos/rootfs/tree"
	"github.com/hostos/hostos/tests/testtool"
)

// An archive is staged in a tmpfs when one has room, outside the work directory, and Close removes it.
func TestStageRootInMemory(t *testing.T) {
	work := t.TempDir()
	if onTmpfs(work) {
		testtool.Missing(t, "a work directory outside tmpfs (TMPDIR is a tmpfs)")
	}
	_, release, _, ok := memoryStage(work)
	if !ok {
		testtool.Missing(t, "a tmpfs with room (/dev/shm, or TMPDIR)")
	}
	release()
	src := filepath.Join(work, "r.tar")
	writeTar(t, src, "", []entry{dir("etc/", 0o755, 0, 0), file("etc/marker", 0o640, 0, 0, "two")})
	r, err := OpenRoot(context.Background(), src, work, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if strings.HasPrefix(r.Tree.Dir, work) || !onTmpfs(r.Tree.Dir) {
		t.Fatalf("staged in %s, want a tmpfs outside %s", r.Tree.Dir, work)
	}
	if b, err := os.ReadFile(filepath.Join(r.Tree.Dir, "etc", "marker")); err != nil || string(b) != "two" {
		t.Fatalf("staged etc/marker = %q, %v", b, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Dir(r.Tree.Dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Close the staging directory is still there: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(work, "root")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("staged on disk as well: %v", err)
	}
}

func TestNoRoom(t *testing.T) {
	for _, err := range []error{&fs.PathError{Op: "write", Path: "x", Err: unix.ENOSPC}, unix.EDQUOT, fmt.Errorf("stage: %w", tree.ErrNoRoom)} {
		if !noRoom(err) {
			t.Errorf("noRoom(%v) = false", err)
		}
	}
	if noRoom(unix.EIO) {
		t.Error("noRoom(EIO) = true")
	}
}

// An archive that takes more than twice the partition it is for stops staging with ErrNoSpace, in memory
// or on disk alike; one that fits is staged whole.
func TestStageRootLimit(t *testing.T) {
	work := t.TempDir()
	src := filepath.Join(work, "big.tar")
	big := strings.Repeat("x", 3<<20)
	writeTar(t, src, "", []entry{dir("usr/", 0o755, 0, 0), file("usr/a", 0o644, 0, 0, big), file("usr/b", 0o644, 0, 0, big)})
	_, err := OpenRoot(context.Background(), src, work, 2<<20, nil)
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "twice the 2 MiB partition") {
		t.Fatalf("OpenRoot with a 2 MiB partition: %v, want ErrNoSpace naming the partition", err)
	}
	if entries, _ := os.ReadDir(work); len(entries) != 1 {
		t.Errorf("staging left %d entries in the work directory, want only the archive", len(entries))
	}
	r, err := OpenRoot(context.Background(), src, work, 64<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Tree.Bytes != 6<<20 {
		t.Errorf("staged %d bytes, want %d", r.Tree.Bytes, 6<<20)
	}
}
