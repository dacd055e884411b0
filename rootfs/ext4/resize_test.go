//go:build unix

package ext4

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hostos/hostos/rootfs/tree"
)

// TestGrow grows a filesystem holding files at an offset of an image: e2fsck -fn finds it clean, the
// superblock says the new size, the files read back and the bytes before the partition are unchanged;
// a tree refused before with a ShortError then fits.
func TestGrow(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs", "e2fsck", "resize2fs")
	ctx := t.Context()
	img := filepath.Join(t.TempDir(), "disk.img")
	newImage(t, img)
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "docker/keep.json"), "kept\n", 0o600)
	s, err := tree.Scan(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := Make(ctx, img, partOff, partSize, Options{Label: "resin-data"}, s); err != nil {
		t.Fatal(err)
	}
	big := t.TempDir()
	mustWrite(t, filepath.Join(big, "big"), string(make([]byte, 80<<20)), 0o644)
	sb, err := tree.Scan(big)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Add(ctx, img, partOff, sb, time.Time{})
	var short *ShortError
	if !errors.As(err, &short) || !errors.Is(err, ErrNoSpace) || short.Blocks*short.BlockSize < 16<<20 {
		t.Fatalf("Add of a tree too big: %v (%+v)", err, short)
	}
	before := hashOutside(t, img)
	const newSize = partSize + 64<<20
	if err := os.Truncate(img, partOff+newSize); err != nil {
		t.Fatal(err)
	}
	if err := Grow(ctx, img, partOff, newSize, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, img, partOff); err != nil {
		t.Fatalf("after Grow: %v", err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	got, err := FilesystemSize(f, partOff)
	f.Close()
	if err != nil || got != newSize {
		t.Fatalf("filesystem size %d (%v), want %d", got, err, newSize)
	}
	if hashOutside(t, img)[0] != before[0] {
		t.Error("Grow changed bytes before the partition")
	}
	if _, err := Add(ctx, img, partOff, sb, time.Time{}); err != nil {
		t.Fatalf("Add after Grow: %v", err)
	}
	if err := Check(ctx, img, partOff); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(mustOpen(t, img), partOff, newSize, "/docker/keep.json"); err != nil || string(b) != "kept\n" {
		t.Errorf("keep.json after Grow: %q %v", b, err)
	}
	if err := Grow(ctx, img, partOff, partSize, time.Time{}); err == nil {
		t.Error("shrinking succeeded")
	}
}
