package update

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/build"
	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/hostapp/update/source"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/ext4"
)

// TestPowerLossDuringDeltaUpdate drives a delta bundle (made against the running slot A, as bundle create
// --delta-from IMAGE makes it) through every write and sync point of an update of the crash fixture's
// GRUB image: whatever point the power is cut at, the slot the bootloader boots is a complete filesystem
// (e2fsck clean) holding the version that slot should hold.
func TestPowerLossDuringDeltaUpdate(t *testing.T) {
	pristine, _ := crashFixture(t, "genericx86-64-ext")
	dir := t.TempDir()
	d, err := disk.Open(pristine, false)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := OpenImage(d, "")
	if err != nil {
		t.Fatal(err)
	}
	slots := tg.Slots
	a := slots[bootenv.SlotA]
	size, err := ext4.FilesystemSize(d, a.Start)
	if err != nil {
		t.Fatal(err)
	}
	deltaPath := filepath.Join(dir, "v2.delta")
	f, err := os.Create(deltaPath)
	if err != nil {
		t.Fatal(err)
	}
	_, err = build.Bundle(context.Background(), build.BundleOptions{
		Rootfs: writeTree(t, dir, "2.0.0"), DeviceType: "genericx86-64-ext", Version: "2.0.0", Epoch: time.Unix(1700000000, 0),
		RootSize: 24 << 20, TempDir: dir,
		DeltaFrom: &bundle.DeltaBase{Image: io.NewSectionReader(d, a.Start, size), Size: size, Version: "1.0.0"},
	}, f)
	d.Close()
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}

	run := func(img string, budget int) (int, error) {
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
		run := tg.Slots[tg.Booted]
		payload, err := source.Open(context.Background(), deltaPath, source.Options{DeviceType: tg.DeviceType,
			RootSize: tg.Slots[tg.Booted.Other()].Size, TempDir: dir, Base: io.NewSectionReader(d, run.Start, run.Size), BaseSize: run.Size})
		if err != nil {
			t.Fatal(err)
		}
		defer payload.Close()
		_, err = tg.Update(context.Background(), payload, Options{TempDir: dir, Time: time.Unix(1700000000, 0)})
		return p.used, err
	}

	work := filepath.Join(dir, "work.img")
	if err := disk.SparseCopy(work, pristine); err != nil {
		t.Fatal(err)
	}
	points, err := run(work, -1)
	if err != nil {
		t.Fatalf("uninterrupted delta update: %v", err)
	}
	want := map[bootenv.Slot]string{bootenv.SlotA: "1.0.0", bootenv.SlotB: "2.0.0"}
	booted := map[bootenv.Slot]int{}
	for cut := 0; cut <= points; cut++ {
		if err := disk.SparseCopy(work, pristine); err != nil {
			t.Fatal(err)
		}
		if _, err := run(work, cut); cut < points && !errors.Is(err, errPowerLoss) {
			t.Fatalf("cut at %d: update returned %v, want the power loss", cut, err)
		}
		slot := bootAfterCut(t, work, cut, want)
		booted[slot]++
	}
	if booted[bootenv.SlotA] == 0 || booted[bootenv.SlotB] == 0 {
		t.Errorf("boots per slot %v: both outcomes should occur", booted)
	}
	t.Logf("%d power-loss points of a delta update; first boot per slot %v", points+1, booted)
}
