package update

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/update/source"
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

// hostappLayout writes img as a one-image OCI layout and returns its directory.
func hostappLayout(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "oci")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return dir
}

// updateHostapp updates img from src, with the source options the CLI gives a device in the hostapp
// layout, with power for budget points (negative: unlimited).
func updateHostapp(t *testing.T, img, src string, budget int) (int, error) {
	t.Helper()
	d, err := disk.Open(img, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := &power{budget: budget}
	tg, err := OpenImage(faultDisk{d, p}, "")
	if err != nil {
		t.Fatal(err)
	}
	tg.State = faultStore{tg.State, p}
	tg.chunk = 512 << 10
	counter, ok := tg.HostappLayout()
	if !ok {
		t.Fatal("the booted slot is not read as a hostapp slot")
	}
	payload, err := source.Open(context.Background(), src, source.Options{
		DeviceType: tg.DeviceType, RootSize: tg.Slots[tg.Booted.Other()].Size, TempDir: t.TempDir(),
		Hostapp: true, HostappCounter: counter})
	if err != nil {
		t.Fatal(err)
	}
	defer payload.Close()
	_, err = tg.Update(context.Background(), payload, Options{TempDir: t.TempDir(), Time: time.Unix(1700000000, 0)})
	return p.used, err
}

// TestUpdateWritesHostappSlot: on a device running a hostapp slot, an update from an OCI image writes
// the other slot in the same layout (engine store, container, current, counter one more), which
// status reads, balena's current/boot/init path follows and e2fsck passes.
func TestUpdateWritesHostappSlot(t *testing.T) {
	img, _ := crashFixture(t, "genericx86-64-ext")
	writeHostappSlot(t, img, bootenv.SlotA, "1.0.0")
	if _, err := updateHostapp(t, img, hostappLayout(t, testHostapp(t, "2.0.0")), -1); err != nil {
		t.Fatal(err)
	}
	d, err := disk.Open(img, false)
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
	if s.Versions[bootenv.SlotA] != "1.0.0" || s.Versions[bootenv.SlotB] != "2.0.0" || s.Env.Root != bootenv.SlotB || !s.Pending {
		t.Fatalf("status %+v, want B 2.0.0 on trial over A 1.0.0", s)
	}
	b := tg.Slots[bootenv.SlotB]
	if err := ext4.Check(context.Background(), img, b.Start); err != nil {
		t.Fatalf("slot B: %v", err)
	}
	o, err := hostappfs.OpenSlot(d, b.Start, b.Size)
	if err != nil || o.Layout() != hostappfs.Hostapp {
		t.Fatalf("slot B: %v, layout %v; want a hostapp slot", err, o)
	}
	for name, want := range map[string]string{"/counter": "2\n", "/current/boot/init": "elf", "/sbin/init": "elf"} {
		if got, err := o.Slot().ReadFile(name); err != nil || string(got) != want {
			t.Errorf("slot B %s: %q, %v; want %q", name, got, err, want)
		}
	}
	if label, err := probeLabel(d, b.Start); err != nil || label != tg.Labels[bootenv.SlotB] {
		t.Errorf("slot B label %q, %v; want %q", label, err, tg.Labels[bootenv.SlotB])
	}
}

// probeLabel reads the ext4 volume label at off.
func probeLabel(d disk.Disk, off int64) (string, error) {
	sb := make([]byte, 136)
	if _, err := d.ReadAt(sb, off+1024+120); err != nil {
		return "", err
	}
	return string(bytes.TrimRight(sb[:16], "\x00")), nil
}

// TestPowerLossDuringHostappUpdate cuts the power at write and sync points of an update that writes a
// hostapp slot: the slot the device boots always holds a complete filesystem with the version
// it should, read through the hostapp layout.
func TestPowerLossDuringHostappUpdate(t *testing.T) {
	pristine, _ := crashFixture(t, "genericx86-64-ext")
	writeHostappSlot(t, pristine, bootenv.SlotA, "1.0.0")
	// The payload is made once (the OCI image as a hostapp slot image) and replayed at every cut.
	src := filepath.Join(t.TempDir(), "hostapp-slot.ext4")
	{
		d, err := disk.Open(pristine, false)
		if err != nil {
			t.Fatal(err)
		}
		tg, err := OpenImage(d, "")
		if err != nil {
			t.Fatal(err)
		}
		p, err := source.Open(context.Background(), hostappLayout(t, testHostapp(t, "2.0.0")), source.Options{
			DeviceType: tg.DeviceType, RootSize: tg.Slots[bootenv.SlotB].Size, TempDir: t.TempDir(), Hostapp: true, HostappCounter: 2})
		d.Close()
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(src)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, p.Image); err != nil {
			t.Fatal(err)
		}
		f.Close()
		p.Close()
	}
	work := filepath.Join(t.TempDir(), "work.img")
	if err := disk.SparseCopy(work, pristine); err != nil {
		t.Fatal(err)
	}
	points, err := updateHostapp(t, work, src, -1)
	if err != nil {
		t.Fatalf("uninterrupted update: %v", err)
	}
	want := map[bootenv.Slot]string{bootenv.SlotA: "1.0.0", bootenv.SlotB: "2.0.0"}
	booted := map[bootenv.Slot]int{}
	// Every point of the switch at the end, and of the slot write before it (which the flat crash test
	// covers point by point) every fifteenth: the test stays a few seconds.
	for cut := 0; cut <= points; cut++ {
		if cut < points-12 && cut%15 != 0 {
			continue
		}
		if err := disk.SparseCopy(work, pristine); err != nil {
			t.Fatal(err)
		}
		if _, err := updateHostapp(t, work, src, cut); cut < points && !errors.Is(err, errPowerLoss) {
			t.Fatalf("cut at %d: update returned %v, want the power loss", cut, err)
		}
		slot := bootAfterCut(t, work, cut, want)
		booted[slot]++
	}
	if booted[bootenv.SlotA] == 0 || booted[bootenv.SlotB] == 0 {
		t.Errorf("boots per slot %v: both outcomes should occur", booted)
	}
	t.Logf("%d of %d power-loss points; first boot per slot %v", booted[bootenv.SlotA]+booted[bootenv.SlotB], points+1, booted)
}
