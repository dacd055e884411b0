package hostappfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hostos/hostos/rootfs/enginestore"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/tree"
	"github.com/hostos/hostos/tests/testtool"
)

var when = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type entry struct {
	name, link string
	typ        byte
	data       string
	xattrs     map[string]string
}

func d(name string) entry               { return entry{name: name, typ: tar.TypeDir} }
func f(name, data string) entry         { return entry{name: name, typ: tar.TypeReg, data: data} }
func l(name, target string) entry       { return entry{name: name, typ: tar.TypeSymlink, link: target} }
func opaqueDir(name string) entry       { return entry{name: name + "/.wh..wh..opq", typ: tar.TypeReg} }
func whiteoutOf(dir, name string) entry { return entry{name: dir + "/.wh." + name, typ: tar.TypeReg} }
func osRelease(version string) string   { return "NAME=\"balenaOS\"\nVERSION_ID=" + version + "\n" }
func layerOf(t testing.TB, es ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, ModTime: when, Mode: 0o644, Size: int64(len(e.data)), Format: tar.FormatPAX}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

// hostappImage is a balenaOS-like hostapp: os-release through the /etc symlink, /boot/init, and a second
// layer that bumps the version, deletes a file and replaces a directory (whiteout, opaque directory).
func hostappImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image,
		layerOf(t, d("etc"), l("etc/os-release", "../usr/lib/os-release"), d("usr"), d("usr/lib"),
			f("usr/lib/os-release", osRelease("1.0.0")), f("etc/gone", "old"), d("etc/conf.d"), f("etc/conf.d/a", "a"),
			d("boot"), f("boot/init", "#!/bin/sh\necho mobynit\n"), f("boot/bzImage", "kernel one")),
		layerOf(t, d("usr"), d("usr/lib"), f("usr/lib/os-release", osRelease("2.0.0")), d("etc"), whiteoutOf("etc", "gone"),
			d("etc/conf.d"), opaqueDir("etc/conf.d"), f("etc/conf.d/b", "b"), d("boot"), f("boot/bzImage", "kernel two")),
	)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: when}
	cfg.Config.Labels = map[string]string{"io.balena.image.class": "hostapp"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// slotImage stages img as a hostapp slot and makes it an ext4 filesystem image.
func slotImage(t testing.TB, img v1.Image) (string, *Staged) {
	t.Helper()
	return slotImageSized(t, img, 32<<20)
}

// slotImageSized is slotImage with a filesystem of size bytes.
func slotImageSized(t testing.TB, img v1.Image, size int64) (string, *Staged) {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		testtool.Need(t, tool)
	}
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	if err := os.Mkdir(stage, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := Stage(context.Background(), &tree.Staged{Dir: stage}, enginestore.Image{Image: img, Tags: []string{"balena-os/hostapp:2.0.0"}}, WithCounter(3))
	if err != nil {
		t.Fatal(err)
	}
	fsImg := filepath.Join(dir, "slot.ext4")
	if err := os.WriteFile(fsImg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fsImg, size); err != nil {
		t.Fatal(err)
	}
	if err := ext4.Make(context.Background(), fsImg, 0, size, ext4.Options{Label: "resin-rootB", Time: when}, st.Tree); err != nil {
		t.Fatal(err)
	}
	if err := ext4.Check(context.Background(), fsImg, 0); err != nil {
		t.Fatalf("e2fsck: %v", err)
	}
	return fsImg, st
}

func TestStageAndRead(t *testing.T) {
	fsImg, st := slotImage(t, hostappImage(t))
	r, err := os.Open(fsImg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fi, _ := r.Stat()
	fsys, err := ext4.Open(r, 0, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	// Through the filesystem, and through its view that keeps the directories read (as OpenSlot does).
	for _, view := range []FS{fsys, fsys.Cached()} {
		o, err := Open(view)
		if err != nil {
			t.Fatal(err)
		}
		if o.Layout() != Hostapp || o.Container() != st.Container || o.Image() != st.Image.ID.String() {
			t.Fatalf("layout %s container %s image %s, want hostapp %s %s", o.Layout(), o.Container(), o.Image(), st.Container, st.Image.ID)
		}
		want := map[string]string{
			"/etc/os-release":      osRelease("2.0.0"), // symlink resolved in the merged view, upper layer wins
			"/usr/lib/os-release":  osRelease("2.0.0"),
			"/etc/../etc/conf.d/b": "b",
			"/boot/bzImage":        "kernel two",
			"/boot/init":           "#!/bin/sh\necho mobynit\n",
		}
		for name, body := range want {
			b, err := o.ReadFile(name)
			if err != nil || string(b) != body {
				t.Errorf("%s: %q, %v; want %q", name, b, err, body)
			}
		}
		for name, body := range want {
			r, err := o.Open(name)
			if err != nil {
				t.Errorf("Open %s: %v", name, err)
				continue
			}
			b, err := io.ReadAll(r)
			r.Close()
			if err != nil || string(b) != body {
				t.Errorf("Open %s: %q, %v; want %q", name, b, err, body)
			}
		}
		for _, name := range []string{"/etc", "/", "/etc/gone"} {
			if r, err := o.Open(name); err == nil {
				r.Close()
				t.Errorf("Open %s: no error, want one (a directory, whited out)", name)
			}
		}
		for _, name := range []string{"/etc/gone", "/etc/conf.d/a", "/etc/missing", "/usr/lib/os-release/x"} {
			if b, err := o.ReadFile(name); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: read %q, %v; want not found (whiteout, opaque directory, missing, under a file)", name, b, err)
			}
		}
		// A whiteout hides the name itself, not only what it would read.
		if layer, fi, err := o.lookup("/etc/gone"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("/etc/gone: found %v in %s, want the whiteout to hide it", fi, layer)
		}
		if b, err := o.ReadFile("/etc"); err == nil {
			t.Errorf("/etc: read %q, want an error (a directory)", b)
		}
		// Directories list as the merged view shows them.
		for dir, want := range map[string]string{
			"/":            "boot etc usr",
			"/etc":         "conf.d os-release", // gone: whited out
			"/etc/conf.d":  "b",                 // a: under the opaque directory
			"/boot":        "bzImage init",
			"/usr/lib/../": "lib",
		} {
			names, err := o.ReadDir(dir)
			if got := strings.Join(names, " "); err != nil || got != want {
				t.Errorf("ReadDir %s: %q, %v; want %q", dir, got, err, want)
			}
		}
		if fi, err := o.Lstat("/etc/os-release"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("Lstat /etc/os-release: %v, %v; want the symlink", fi, err)
		}
		if fi, err := o.Lstat("/etc/gone"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Lstat /etc/gone: %v, %v; want not found", fi, err)
		}
		if fi, err := o.Lstat("/boot"); err != nil || !fi.IsDir() {
			t.Errorf("Lstat /boot: %v, %v; want a directory", fi, err)
		}
		if fi, err := o.Lstat("/boot/init"); err != nil || fi.Mode() != 0o644 {
			t.Errorf("Lstat /boot/init: %v, %v; want a regular file, mode 0644 as the layer has it", fi, err)
		}

	}

	// What balenaOS itself follows at the slot's root: current/boot/init (rollback-health), sbin/init, boot.
	for _, name := range []string{"/current/boot/init", "/sbin/init", "/boot/init"} {
		b, err := fsys.ReadFile(name)
		if err != nil || string(b) != "#!/bin/sh\necho mobynit\n" {
			t.Errorf("slot %s: %q, %v", name, b, err)
		}
	}
	if b, err := fsys.ReadFile("/counter"); err != nil || string(b) != "3\n" {
		t.Errorf("counter: %q, %v", b, err)
	}
	if target, err := fsys.ReadLink("/current"); err != nil || target != "hostapps/"+st.Container {
		t.Errorf("current -> %q, %v", target, err)
	}
	// The convenience reader gives the same, and a flat slot reads as before.
	if b, err := ReadFile(r, 0, fi.Size(), "/etc/os-release"); err != nil || string(b) != osRelease("2.0.0") {
		t.Errorf("ReadFile: %q, %v", b, err)
	}
}

func TestFlatSlot(t *testing.T) {
	testtool.Need(t, "mkfs.ext4")
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	for _, p := range []string{"etc", "usr/lib"} {
		if err := os.MkdirAll(filepath.Join(stage, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(stage, "usr/lib/os-release"), []byte(osRelease("1.2.3")), 0o644)
	os.Symlink("../usr/lib/os-release", filepath.Join(stage, "etc/os-release"))
	// A "current" link alone (no engine store) does not make a slot a hostapp slot.
	os.Symlink("nowhere", filepath.Join(stage, "current"))
	staged, err := tree.Scan(stage)
	if err != nil {
		t.Fatal(err)
	}
	fsImg := filepath.Join(dir, "flat.ext4")
	os.WriteFile(fsImg, nil, 0o644)
	os.Truncate(fsImg, 8<<20)
	if err := ext4.Make(context.Background(), fsImg, 0, 8<<20, ext4.Options{Time: when}, staged); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(fsImg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if b, err := ReadFile(r, 0, 8<<20, "/etc/os-release"); err != nil || string(b) != osRelease("1.2.3") {
		t.Errorf("flat slot: %q, %v", b, err)
	}
}

func TestBrokenHostappSlot(t *testing.T) {
	fsImg, st := slotImage(t, hostappImage(t))
	// Point current at a container the store does not have: an error, not the slot's own (absent) files.
	dbg := ext4.Debugfs{Image: fsImg}
	if err := dbg.Apply(context.Background(), []string{"rm /current", "symlink /current hostapps/" + strings.Repeat("f", 64)}); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(fsImg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fi, _ := r.Stat()
	if _, err := ReadFile(r, 0, fi.Size(), "/etc/os-release"); err == nil || !strings.Contains(err.Error(), "named by current") {
		t.Fatalf("current naming no container: %v, want an error naming it", err)
	}
	_ = st
}
