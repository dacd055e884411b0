//go:build unix

package ext4

import (
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostos/hostos/rootfs/tree"
)

// hashOutside is the sha256 of the image bytes outside [partOff, partOff+partSize).
func hashOutside(t *testing.T, img string) [2][32]byte {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	var out [2][32]byte
	for i, r := range []*io.SectionReader{io.NewSectionReader(f, 0, partOff), io.NewSectionReader(f, partOff+partSize, fi.Size()-partOff-partSize)} {
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			t.Fatal(err)
		}
		copy(out[i][:], h.Sum(nil))
	}
	return out
}

func TestAdd(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs", "e2fsck")
	ctx := t.Context()
	img := filepath.Join(t.TempDir(), "disk.img")
	newImage(t, img)

	// The filesystem as it is: a store with one file to keep and one to replace.
	first := t.TempDir()
	mustWrite(t, filepath.Join(first, "store/keep.json"), "kept\n", 0o600)
	mustWrite(t, filepath.Join(first, "store/repositories.json"), "{}", 0o600)
	s1, err := tree.Scan(first)
	if err != nil {
		t.Fatal(err)
	}
	if err := Make(ctx, img, partOff, partSize, Options{Label: "resin-data"}, s1); err != nil {
		t.Fatal(err)
	}
	outside := hashOutside(t, img)

	// The staged tree: the same files (one changed), a new directory tree with a symlink, and fixups
	// for a whiteout node, a hard link, an owner and an xattr.
	second := t.TempDir()
	mustWrite(t, filepath.Join(second, "store/keep.json"), "kept\n", 0o600)
	mustWrite(t, filepath.Join(second, "store/repositories.json"), `{"Repositories":{"a":{}}}`, 0o600)
	mustWrite(t, filepath.Join(second, "store/layer/diff/etc/hello"), "hello\n", 0o644)
	mustWrite(t, filepath.Join(second, "apps.json"), "{}\n", 0o644)
	if err := os.Symlink("../layer/diff", filepath.Join(second, "store/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(second, "store/layer"), 0o710); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	if err := unix.Lutimes(filepath.Join(second, "store/layer/diff/etc/hello"), []unix.Timeval{unix.NsecToTimeval(mtime.UnixNano()), unix.NsecToTimeval(mtime.UnixNano())}); err != nil {
		t.Fatal(err)
	}
	s2, err := tree.Scan(second)
	if err != nil {
		t.Fatal(err)
	}
	s2.Fixups = []tree.Fixup{
		{Op: tree.OpMknod, Path: "/store/layer/diff/etc/removed", Mode: unix.S_IFCHR},
		{Op: tree.OpLink, Path: "/store/layer/diff/etc/hard", Target: "/store/layer/diff/etc/hello", Links: 2},
		{Op: tree.OpOwner, Path: "/store/layer/diff/etc/hello", UID: 1000, GID: 1001},
		{Op: tree.OpOwner, Path: "/store/keep.json", UID: 7, GID: 7}, // not written: ignored
		{Op: tree.OpXattr, Path: "/store/layer/diff/etc", Name: "trusted.overlay.opaque", Value: []byte("y")},
	}
	res, err := Add(ctx, img, partOff, s2, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Replaced != 1 || res.Created != 8 {
		t.Errorf("Add: %+v, want 1 replaced and 8 created", res)
	}
	fsckCopy(t, img)
	if err := Check(ctx, img, partOff); err != nil {
		t.Fatal(err)
	}
	if hashOutside(t, img) != outside {
		t.Error("Add changed bytes outside the filesystem")
	}
	if got := catFile(t, img, "/store/repositories.json"); got != `{"Repositories":{"a":{}}}` {
		t.Errorf("repositories.json: %q", got)
	}
	if got := catFile(t, img, "/store/layer/diff/etc/hard"); got != "hello\n" {
		t.Errorf("hard link: %q", got)
	}
	hello := statPath(t, img, "/store/layer/diff/etc/hello")
	if hello.uid != 1000 || hello.gid != 1001 || hello.links != 2 || hello.mode != 0o644 || hello.mtime != mtime.Unix() {
		t.Errorf("hello: %+v", hello)
	}
	if keep := statPath(t, img, "/store/keep.json"); keep.uid != 0 {
		t.Errorf("keep.json was touched: %+v", keep)
	}
	if l := statPath(t, img, "/store/layer"); l.mode != 0o710 || l.typ != "directory" {
		t.Errorf("layer directory: %+v", l)
	}
	if n := statPath(t, img, "/store/layer/diff/etc/removed"); n.typ != "character special" || n.major != 0 || n.minor != 0 {
		t.Errorf("whiteout: %+v", n)
	}
	if l := statPath(t, img, "/store/link"); l.linkDest != "../layer/diff" {
		t.Errorf("symlink: %+v", l)
	}
	if v := xattr(t, img, "/store/layer/diff/etc", "trusted.overlay.opaque"); v != "y" {
		t.Errorf("opaque: %q", v)
	}

	// The same tree again changes nothing.
	before, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err = Add(ctx, img, partOff, s2, time.Time{})
	if err != nil || res.Changed() {
		t.Fatalf("second Add: %+v, %v", res, err)
	}
	after, _ := os.ReadFile(img)
	if string(before) != string(after) {
		t.Error("a second identical Add changed the image")
	}

	// A tree that does not fit is refused before writing.
	big := t.TempDir()
	f, err := os.Create(filepath.Join(big, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(partSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sb, _ := tree.Scan(big)
	_, err = Add(ctx, img, partOff, sb, time.Time{})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "MiB short") {
		t.Fatalf("Add of a tree too big: %v", err)
	}
	after2, _ := os.ReadFile(img)
	if string(after2) != string(after) {
		t.Error("a refused Add changed the image")
	}
}

func mustWrite(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}
