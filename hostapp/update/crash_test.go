package update

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/bootenv/bootsim"
	"github.com/hostos/hostos/hostapp/build"
	"github.com/hostos/hostos/hostapp/update/source"
	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/tests/testtool"
)

var errPowerLoss = errors.New("power loss")

// power counts write and sync points; once the budget is spent, power is gone: nothing more reaches
// the disk and every later write fails.
type power struct {
	budget int // points left; negative: unlimited
	used   int
}

func (p *power) point() error {
	if p.budget >= 0 && p.used >= p.budget {
		return errPowerLoss
	}
	p.used++
	return nil
}

type faultDisk struct {
	disk.Disk
	p *power
}

func (d faultDisk) WriteAt(b []byte, off int64) (int, error) {
	if err := d.p.point(); err != nil {
		return 0, err
	}
	return d.Disk.WriteAt(b, off)
}

func (d faultDisk) Sync() error {
	if err := d.p.point(); err != nil {
		return err
	}
	return d.Disk.Sync()
}

type faultStore struct {
	StateStore
	p *power
}

func (s faultStore) Touch(name string) error {
	if err := s.p.point(); err != nil {
		return err
	}
	return s.StateStore.Touch(name)
}

func (s faultStore) Remove(name string) error {
	if err := s.p.point(); err != nil {
		return err
	}
	return s.StateStore.Remove(name)
}

func (s faultStore) Put(name string, data []byte) error {
	if err := s.p.point(); err != nil {
		return err
	}
	return s.StateStore.Put(name, data)
}

func writeTree(t *testing.T, dir, version string) string {
	t.Helper()
	root := filepath.Join(dir, "root-"+version)
	for _, d := range []string{"etc", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/os-release": fmt.Sprintf("NAME=balenaOS\nVERSION_ID=%s\n", version),
		"usr/bin/blob":   strings.Repeat(version, 1<<20),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// crashFixture builds a version 1 image and a version 2 bundle for deviceType.
func crashFixture(t *testing.T, deviceType string) (img, bundlePath string) {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck", "mkfs.vfat", "mcopy"} {
		testtool.Need(t, tool)
	}
	dir := t.TempDir()
	deploy := filepath.Join(dir, "deploy")
	if err := os.MkdirAll(deploy, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(deploy, "kernel-1"), []byte(strings.Repeat("one ", 5000)), 0o644)
	os.WriteFile(filepath.Join(deploy, "kernel-2"), []byte(strings.Repeat("two ", 9000)), 0o644)
	spec, err := build.ParseSpec([]byte(fmt.Sprintf(`device_type = %q
[sizes]
boot = 40
root = 36
state = 8
data = 12
[rootfs]
source = %q
[boot]
deploy_dir = %q
files = ["kernel-1:/kernel"]
`, deviceType, writeTree(t, dir, "1.0.0"), deploy)), "crash.toml", dir)
	if err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(1700000000, 0)
	img = filepath.Join(dir, "disk.img")
	if _, err := build.Build(context.Background(), spec, img, build.WithEpoch(epoch)); err != nil {
		t.Fatal(err)
	}
	bundlePath = filepath.Join(dir, "v2.hostos")
	f, err := os.Create(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	_, err = build.Bundle(context.Background(), build.BundleOptions{
		Rootfs: writeTree(t, dir, "2.0.0"), DeviceType: deviceType, Version: "2.0.0", DeployDir: deploy,
		BootFiles: []string{"kernel-2:/kernel", "kernel-2:/overlays/new.dtbo"}, Epoch: epoch, RootSize: 24 << 20, TempDir: dir,
	}, f)
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return img, bundlePath
}

// runUpdate updates img with power for budget points (negative: unlimited) and reports the points used.
func runUpdate(t *testing.T, img, bundlePath string, budget int) (int, error) {
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
	payload, err := source.Open(context.Background(), bundlePath, source.Options{
		DeviceType: tg.DeviceType, RootSize: tg.Slots[bootenv.SlotB].Size, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer payload.Close()
	_, err = tg.Update(context.Background(), payload, Options{TempDir: t.TempDir(), Time: time.Unix(1700000000, 0)})
	return p.used, err
}

func partitionHash(t *testing.T, img string, p partition.Partition) [32]byte {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, p.Start, p.Size)); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// TestPowerLossDuringUpdate cuts the power at every write and sync point of an update, for each
// bootloader backend, then powers the device on through the model of its boot script: the slot it boots
// is always a complete filesystem (e2fsck clean) with the version that slot should hold, and the data
// and state partitions are intact.
func TestPowerLossDuringUpdate(t *testing.T) {
	total := 0
	for _, dt := range []string{"genericx86-64-ext", "raspberrypi4-64", "raspberrypi5"} {
		t.Run(dt, func(t *testing.T) {
			pristine, bundlePath := crashFixture(t, dt)
			d, err := disk.Open(pristine, false)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := partition.Read(d, d.Size(), d.SectorSize())
			d.Close()
			if err != nil {
				t.Fatal(err)
			}
			gpt := pt.Kind == partition.GPT
			data, _ := pt.Partition(map[bool]int{true: 5, false: 6}[gpt])
			state, _ := pt.Partition(map[bool]int{true: 4, false: 5}[gpt])
			dataHash := partitionHash(t, pristine, data)

			work := filepath.Join(t.TempDir(), "work.img")
			if err := disk.SparseCopy(work, pristine); err != nil {
				t.Fatal(err)
			}
			points, err := runUpdate(t, work, bundlePath, -1)
			if err != nil {
				t.Fatalf("uninterrupted update: %v", err)
			}
			want := map[bootenv.Slot]string{bootenv.SlotA: "1.0.0", bootenv.SlotB: "2.0.0"}
			booted := map[bootenv.Slot]int{}
			for cut := 0; cut <= points; cut++ {
				if err := disk.SparseCopy(work, pristine); err != nil {
					t.Fatal(err)
				}
				if _, err := runUpdate(t, work, bundlePath, cut); cut < points && !errors.Is(err, errPowerLoss) {
					t.Fatalf("cut at %d: update returned %v, want the power loss", cut, err)
				}
				slot := bootAfterCut(t, work, cut, want)
				if err := ext4.Check(context.Background(), work, state.Start); err != nil {
					t.Fatalf("cut at %d: state partition: %v", cut, err)
				}
				if partitionHash(t, work, data) != dataHash {
					t.Fatalf("cut at %d: data partition changed", cut)
				}
				booted[slot]++
			}
			if booted[bootenv.SlotA] == 0 || booted[bootenv.SlotB] == 0 {
				t.Errorf("boots per slot %v: both outcomes should occur", booted)
			}
			t.Logf("%d power-loss points; first boot per slot %v", points+1, booted)
			total += points + 1
		})
	}
	if total < 200 && !t.Failed() {
		t.Errorf("only %d power-loss points across backends", total)
	}
	t.Logf("%d power-loss points across backends", total)
}

// TestPowerLossDuringRollback updates an image to version 2, then cuts the power at every write point of
// a rollback to version 1 (manual, and after failed health checks), for each bootloader backend. Whenever
// the bootloader already points back at slot A, the boot files are version 1's (the replaced kernel back,
// the added overlay gone) and the fingerprint describes them; while it still points at B, running the
// same rollback again finishes it. Either way the breadcrumbs end as balenaOS's rollback-stop leaves them
// and the backup is gone.
func TestPowerLossDuringRollback(t *testing.T) {
	kernel1 := strings.Repeat("one ", 5000)
	for _, dt := range []string{"genericx86-64-ext", "raspberrypi4-64", "raspberrypi5"} {
		t.Run(dt, func(t *testing.T) {
			pristine, bundlePath := crashFixture(t, dt)
			updated := filepath.Join(t.TempDir(), "updated.img")
			if err := disk.SparseCopy(updated, pristine); err != nil {
				t.Fatal(err)
			}
			if _, err := runUpdate(t, updated, bundlePath, -1); err != nil {
				t.Fatal(err)
			}
			work := filepath.Join(t.TempDir(), "work.img")
			open := func(p *power) (*Target, func()) {
				d, err := disk.Open(work, true)
				if err != nil {
					t.Fatal(err)
				}
				tg, err := OpenImage(faultDisk{d, p}, bootenv.SlotB)
				if err != nil {
					t.Fatal(err)
				}
				tg.State = faultStore{tg.State, p}
				return tg, func() { d.Close() }
			}
			rollbacks := map[string]func(tg *Target) error{
				"manual": func(tg *Target) error { _, err := tg.Rollback(); return err },
				"health": func(tg *Target) error {
					st, err := tg.Read()
					if err != nil {
						return err
					}
					step, err := HealthRollback(st)
					if err != nil {
						return err
					}
					return tg.Apply(step)
				},
			}
			// Every cut of both rollbacks for GRUB; for the other backends (whose restore writes the same
			// files) the manual rollback, every second cut, to keep the test short.
			stride := 1
			if dt != "genericx86-64-ext" {
				delete(rollbacks, "health")
				stride = 2
			}
			for name, rollback := range rollbacks {
				if err := disk.SparseCopy(work, updated); err != nil {
					t.Fatal(err)
				}
				p := &power{budget: -1}
				tg, done := open(p)
				if err := rollback(tg); err != nil {
					t.Fatalf("%s: uninterrupted rollback: %v", name, err)
				}
				done()
				points := p.used
				if points < 3 {
					t.Fatalf("%s: rollback used %d write points: no boot files restored?", name, points)
				}
				for cut := 0; cut <= points; cut += stride {
					if cut+stride > points {
						cut = points // always the uninterrupted end
					}
					if err := disk.SparseCopy(work, updated); err != nil {
						t.Fatal(err)
					}
					tg, done := open(&power{budget: cut})
					if err := rollback(tg); cut < points && !errors.Is(err, errPowerLoss) {
						t.Fatalf("%s cut at %d: %v, want the power loss", name, cut, err)
					}
					done()
					tg, done = open(&power{budget: -1})
					env, err := tg.Env.Read(tg.Boot)
					if err != nil {
						t.Fatalf("%s cut at %d: %v", name, cut, err)
					}
					if env.Root == bootenv.SlotB {
						if err := rollback(tg); err != nil {
							t.Fatalf("%s cut at %d: rollback again: %v", name, cut, err)
						}
					}
					checkRolledBack(t, tg, fmt.Sprintf("%s cut at %d", name, cut), kernel1, cut == points)
					done()
				}
				t.Logf("%s: %d power-loss points", name, points+1)
			}
		})
	}
}

// checkRolledBack checks that tg boots slot A with version 1's boot files; complete also wants the
// breadcrumbs and the backup gone (a cut may leave them: the switch came first).
func checkRolledBack(t *testing.T, tg *Target, what, kernel1 string, complete bool) {
	t.Helper()
	env, err := tg.Env.Read(tg.Boot)
	if err != nil || env.Root != bootenv.SlotA || env.UpgradeAvailable {
		t.Fatalf("%s: env %+v, %v, want slot A committed", what, env, err)
	}
	if b, err := tg.Boot.ReadFile("/kernel"); err != nil || string(b) != kernel1 {
		t.Fatalf("%s: /kernel is not version 1's (%d bytes, %v)", what, len(b), err)
	}
	if _, err := tg.Boot.ReadFile("/overlays/new.dtbo"); err == nil {
		t.Fatalf("%s: the overlay version 2 added is still there", what)
	}
	fp, err := tg.Boot.ReadFile("/balenaos.fingerprint")
	if err != nil || !strings.Contains(string(fp), fmt.Sprintf("%x  /kernel\n", md5.Sum([]byte(kernel1)))) {
		t.Fatalf("%s: fingerprint does not describe version 1's kernel: %v\n%s", what, err, fp)
	}
	if complete {
		for _, c := range append([]string{BootBackup}, stopped...) {
			if ok, _ := tg.State.Has(c); ok {
				t.Errorf("%s: %s left in the state partition", what, c)
			}
		}
	}
}

// bootAfterCut opens the image work after the power cut at point cut, boots it through the bootloader's
// model and checks that the slot it boots holds the version want names for it and passes e2fsck. It
// returns that slot.
func bootAfterCut(t *testing.T, work string, cut int, want map[bootenv.Slot]string) bootenv.Slot {
	t.Helper()
	d, err := disk.Open(work, true)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := OpenImage(d, "")
	if err != nil {
		t.Fatalf("cut at %d: image unreadable: %v", cut, err)
	}
	slot, err := bootsim.Boot(tg.Env, tg.Boot)
	if err != nil {
		t.Fatalf("cut at %d: boot: %v", cut, err)
	}
	if v := tg.SlotVersion(slot); v != want[slot] {
		t.Fatalf("cut at %d: boots slot %s holding version %q, want %q", cut, slot, v, want[slot])
	}
	start := tg.Slots[slot].Start
	d.Close()
	if err := ext4.Check(context.Background(), work, start); err != nil {
		t.Fatalf("cut at %d: slot %s: %v", cut, slot, err)
	}
	return slot
}
