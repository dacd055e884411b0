package update

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/enginestore"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/hostappfs"
	"github.com/hostos/hostos/rootfs/tree"
)

// testHostapp is a one-layer hostapp image of the given version, its os-release where Yocto puts it
// (/usr/lib, with /etc/os-release a relative symlink) and a /boot/init.
func testHostapp(t *testing.T, version string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	when := time.Unix(1700000000, 0)
	osr := "NAME=balenaOS\nVERSION_ID=" + version + "\n"
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/os-release", Typeflag: tar.TypeSymlink, Linkname: "../usr/lib/os-release"},
		{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "usr/lib/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "usr/lib/os-release", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(osr))},
		{Name: "boot/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "boot/init", Typeflag: tar.TypeReg, Mode: 0o755, Size: 3},
	} {
		h.ModTime = when
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "usr/lib/os-release":
			tw.Write([]byte(osr))
		case "boot/init":
			tw.Write([]byte("elf"))
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
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeHostappSlot replaces the filesystem of slot in img with a balenaOS hostapp slot of version.
func writeHostappSlot(t *testing.T, img string, slot bootenv.Slot, version string) {
	t.Helper()
	d, err := disk.Open(img, false)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := OpenImage(d, "")
	if err != nil {
		t.Fatal(err)
	}
	p, label := tg.Slots[slot], tg.Labels[slot]
	d.Close()
	stage := filepath.Join(t.TempDir(), "slot")
	if err := os.Mkdir(stage, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := hostappfs.Stage(context.Background(), &tree.Staged{Dir: stage}, enginestore.Image{Image: testHostapp(t, version)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ext4.Make(context.Background(), img, p.Start, p.Size, ext4.Options{Label: label, Time: time.Unix(1700000000, 0)}, st.Tree); err != nil {
		t.Fatal(err)
	}
}

// TestStatusReadsHostappSlots: on a device whose slots hold balenaOS's hostapp layout, status reads each
// slot's version from the container current names, and a rollback to such a slot is not refused as
// "no complete system".
func TestStatusReadsHostappSlots(t *testing.T) {
	img, _ := crashFixture(t, "genericx86-64-ext")
	writeHostappSlot(t, img, bootenv.SlotB, "2.5.0")
	d, err := disk.Open(img, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tg, err := OpenImage(d, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := tg.Status()
	if err != nil {
		t.Fatal(err)
	}
	if s.Versions[bootenv.SlotA] != "1.0.0" || s.Versions[bootenv.SlotB] != "2.5.0" {
		t.Fatalf("versions %v, want A 1.0.0 (flat) and B 2.5.0 (hostapp)", s.Versions)
	}
	step, err := tg.Rollback()
	if err != nil {
		t.Fatalf("rollback to the hostapp slot: %v", err)
	}
	if step.Env.Root != bootenv.SlotB {
		t.Fatalf("rollback points at %s, want B", step.Env.Root)
	}
}
