package bootsim_test

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/bootenv/bootsim"
	"github.com/hostos/hostos/rootfs/bootfs"
)

var parts = bootenv.Parts{A: 2, B: 3}

const (
	A = bootenv.SlotA
	B = bootenv.SlotB
)

func grubEnv(t testing.TB, vars map[string]string) []byte {
	t.Helper()
	b, err := bootenv.EncodeGrubEnv(vars)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dir is a boot partition in a temporary directory holding files.
func dir(t testing.TB, files map[string][]byte) bootfs.Dir {
	t.Helper()
	d := bootfs.Dir(t.TempDir())
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := d.MkdirAll(filepath.Dir(name), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := d.WriteFile(name, files[name], time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// fresh is a boot partition as hostapp/build makes it for the backend's bootloader.
func fresh(t testing.TB, b bootenv.Backend) bootfs.Dir {
	t.Helper()
	switch b.Name() {
	case "grub":
		env := grubEnv(t, map[string]string{"bootcount": "0", "resin_root_part": "2", "upgrade_available": "0"})
		return dir(t, map[string][]byte{"/grub/grubenv": env, "/EFI/BOOT/grubenv": env})
	case "balena-bootloader":
		return dir(t, map[string][]byte{"/bootenv": grubEnv(t, map[string]string{"resin_root_part": "A"})})
	}
	return dir(t, nil)
}

// counter is a boot partition that counts the files written.
type counter struct {
	bootfs.FS
	writes []string
}

func (c *counter) WriteFile(name string, data []byte, mtime time.Time) error {
	c.writes = append(c.writes, name)
	return c.FS.WriteFile(name, data, mtime)
}

func backends() []bootenv.Backend {
	return []bootenv.Backend{bootenv.Grub(parts), bootenv.GrubEFI(parts), bootenv.UBoot(parts), bootenv.BalenaBootloader(parts)}
}

func boot(t *testing.T, b bootenv.Backend, fsys bootfs.FS) (bootenv.Slot, bootenv.Env) {
	t.Helper()
	s, err := bootsim.Boot(b, fsys)
	if err != nil {
		t.Fatalf("%s: boot: %v", b.Name(), err)
	}
	e, err := b.Read(fsys)
	if err != nil {
		t.Fatalf("%s: read after boot: %v", b.Name(), err)
	}
	return s, e
}

func write(t *testing.T, b bootenv.Backend, fsys bootfs.FS, e bootenv.Env) {
	t.Helper()
	if err := b.Write(fsys, e); err != nil {
		t.Fatalf("%s: write %+v: %v", b.Name(), e, err)
	}
}

// TestFreshImage boots root A and writes nothing.
func TestFreshImage(t *testing.T) {
	for _, b := range backends() {
		c := &counter{FS: fresh(t, b)}
		for range 3 {
			if s, e := boot(t, b, c); s != A || e != (bootenv.Env{Root: A}) {
				t.Errorf("%s: fresh image boots %s with %+v", b.Name(), s, e)
			}
		}
		if len(c.writes) != 0 {
			t.Errorf("%s: booting a fresh image wrote %q", b.Name(), c.writes)
		}
	}
}

// TestHealthy is an update that works: the new root boots with bootcount 1, and once committed it stays,
// without the bootloader writing anything.
func TestHealthy(t *testing.T) {
	for _, b := range backends() {
		d := fresh(t, b)
		write(t, b, d, bootenv.Env{Root: B, UpgradeAvailable: true})
		if s, e := boot(t, b, d); s != B || e != (bootenv.Env{Root: B, UpgradeAvailable: true, BootCount: 1}) {
			t.Errorf("%s: first boot after the switch: %s with %+v, want B with bootcount 1", b.Name(), s, e)
		}
		write(t, b, d, bootenv.Env{Root: B})
		c := &counter{FS: d}
		for i := range 5 {
			if s, e := boot(t, b, c); s != B || e != (bootenv.Env{Root: B}) {
				t.Errorf("%s: boot %d after commit: %s with %+v", b.Name(), i+1, s, e)
			}
		}
		if len(c.writes) != 0 {
			t.Errorf("%s: boots after commit wrote %q", b.Name(), c.writes)
		}
	}
}

// TestNeverUp is an update whose root never comes up to commit or roll back: the bootloader counts and falls
// back to the old root at its limit, in memory only (the environment keeps naming the new root).
func TestNeverUp(t *testing.T) {
	for _, tc := range []struct {
		b      bootenv.Backend
		slots  string // the root of each boot
		counts []int  // bootcount after each boot
	}{
		// GRUB: one try, then the other root; the count stops at 2.
		{bootenv.Grub(parts), "BAAAAA", []int{1, 2, 2, 2, 2, 2}},
		{bootenv.GrubEFI(parts), "BAAAAA", []int{1, 2, 2, 2, 2, 2}},
		// U-Boot: over os_bc_lim=3 the other root. setexpr counts in hexadecimal and test compares in
		// decimal, so at a ("a" reads as 0) to f U-Boot tries the new root again, and from 10 falls back.
		{bootenv.UBoot(parts), "BBBAAAAAABBBBBBAAAA", []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 10, 11, 12, 13}},
		// balena's bootloader: from bootcount 3 the other root; it keeps counting.
		{bootenv.BalenaBootloader(parts), "BBAAAA", []int{1, 2, 3, 4, 5, 6}},
	} {
		d := fresh(t, tc.b)
		write(t, tc.b, d, bootenv.Env{Root: B, UpgradeAvailable: true})
		var slots strings.Builder
		var counts []int
		for range tc.slots {
			s, e := boot(t, tc.b, d)
			if e.Root != B || !e.UpgradeAvailable {
				t.Errorf("%s: a boot changed the environment to %+v", tc.b.Name(), e)
			}
			slots.WriteString(string(s))
			counts = append(counts, e.BootCount)
		}
		if slots.String() != tc.slots || !slices.Equal(counts, tc.counts) {
			t.Errorf("%s: boots %s with counts %v, want %s with %v", tc.b.Name(), slots.String(), counts, tc.slots, tc.counts)
		}
	}
}

// TestAltbootRollback: the old root came up after the fallback and makes it permanent.
func TestAltbootRollback(t *testing.T) {
	for _, b := range backends() {
		d := fresh(t, b)
		write(t, b, d, bootenv.Env{Root: B, UpgradeAvailable: true})
		for i := 0; ; i++ {
			if s, _ := boot(t, b, d); s == A {
				break
			}
			if i == 10 {
				t.Fatalf("%s: no fallback in 10 boots", b.Name())
			}
		}
		write(t, b, d, bootenv.Env{Root: A})
		for range 4 {
			if s, e := boot(t, b, d); s != A || e != (bootenv.Env{Root: A}) {
				t.Errorf("%s: after the rollback boots %s with %+v", b.Name(), s, e)
			}
		}
	}
}

// TestGrub checks what the GRUB script's save_env touches: the count in /grub/grubenv, nothing else.
func TestGrub(t *testing.T) {
	b := bootenv.Grub(parts)
	env := grubEnv(t, map[string]string{"resin_root_part": "3", "upgrade_available": "1", "bootcount": "0", "extra": "x"})
	d := dir(t, map[string][]byte{"/grub/grubenv": env, "/EFI/BOOT/grubenv": env})
	if s, _ := boot(t, b, d); s != B {
		t.Fatalf("boots %s", s)
	}
	got, _ := d.ReadFile("/grub/grubenv")
	if want := grubEnv(t, map[string]string{"resin_root_part": "3", "upgrade_available": "1", "bootcount": "1", "extra": "x"}); string(got) != string(want) {
		t.Errorf("/grub/grubenv after boot:\n%q\nwant\n%q", got[:100], want[:100])
	}
	if got, _ := d.ReadFile("/EFI/BOOT/grubenv"); string(got) != string(env) {
		t.Error("boot changed /EFI/BOOT/grubenv")
	}
	// Without /grub/grubenv the script's defaults hold: root A, nothing counted or saved.
	c := &counter{FS: dir(t, map[string][]byte{"/EFI/BOOT/grubenv": env})}
	if s, err := bootsim.Boot(b, c); err != nil || s != A || len(c.writes) != 0 {
		t.Errorf("without /grub/grubenv: %s, %v, writes %q", s, err, c.writes)
	}
	// A stale count does not move a committed root.
	d = dir(t, map[string][]byte{"/grub/grubenv": grubEnv(t, map[string]string{"resin_root_part": "3", "upgrade_available": "0", "bootcount": "2"})})
	if s, _ := boot(t, b, d); s != B {
		t.Errorf("committed root B with bootcount 2 boots %s", s)
	}
}

// TestGrubEFI checks balenaOS's EFI grub.cfg: it counts in /EFI/BOOT/grubenv only, and a count of 2 sends
// it to the other root even when the root is committed.
func TestGrubEFI(t *testing.T) {
	b := bootenv.GrubEFI(parts)
	env := grubEnv(t, map[string]string{"resin_root_part": "3", "upgrade_available": "1", "bootcount": "0", "extra": "x"})
	d := dir(t, map[string][]byte{"/grub/grubenv": env, "/EFI/BOOT/grubenv": env})
	for i, want := range []bootenv.Slot{B, A, A} {
		if s, _ := boot(t, b, d); s != want {
			t.Fatalf("boot %d: %s, want %s", i+1, s, want)
		}
	}
	got, _ := d.ReadFile("/EFI/BOOT/grubenv")
	if want := grubEnv(t, map[string]string{"resin_root_part": "3", "upgrade_available": "1", "bootcount": "2", "extra": "x"}); string(got) != string(want) {
		t.Errorf("/EFI/BOOT/grubenv after the boots:\n%q\nwant\n%q", got[:100], want[:100])
	}
	if got, _ := d.ReadFile("/grub/grubenv"); string(got) != string(env) {
		t.Error("boot changed /grub/grubenv")
	}
	// Without /EFI/BOOT/grubenv: root A, nothing saved, whatever /grub/grubenv says.
	c := &counter{FS: dir(t, map[string][]byte{"/grub/grubenv": env})}
	if s, err := bootsim.Boot(b, c); err != nil || s != A || len(c.writes) != 0 {
		t.Errorf("without /EFI/BOOT/grubenv: %s, %v, writes %q", s, err, c.writes)
	}
	// balena's grub.cfg falls back on a count of 2 alone.
	d = dir(t, map[string][]byte{"/EFI/BOOT/grubenv": grubEnv(t, map[string]string{"resin_root_part": "3", "upgrade_available": "0", "bootcount": "2"})})
	if s, _ := boot(t, b, d); s != A {
		t.Errorf("committed root B with bootcount 2 boots %s, want A", s)
	}
}

func TestUBoot(t *testing.T) {
	b := bootenv.UBoot(parts)
	uenv := []byte("resin_root_part=3\nupgrade_available=1\n")
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		slot  bootenv.Slot
		count string // bootcount.env afterwards; "" for none
	}{
		{"no bootcount.env counts from 0", map[string][]byte{"/resinOS_uEnv.txt": uenv}, B, "bootcount=1\n\x00"},
		{"fatwrite of 13 bytes", map[string][]byte{"/resinOS_uEnv.txt": uenv, "/bootcount.env": []byte("bootcount=f\n")}, A, "bootcount=10\n"},
		{"fatwrite cuts", map[string][]byte{"/resinOS_uEnv.txt": uenv, "/bootcount.env": []byte("bootcount=ff\n")}, A, "bootcount=100"},
		{"hexadecimal partition", map[string][]byte{"/resinOS_uEnv.txt": []byte("resin_root_part=0x3\nupgrade_available=0\n")}, B, ""},
		{"extra_uEnv.txt lowers the limit", map[string][]byte{"/resinOS_uEnv.txt": uenv, "/extra_uEnv.txt": []byte("os_bc_lim=0\n")}, A, "bootcount=1\n\x00"},
		{"os_bc_skip", map[string][]byte{"/resinOS_uEnv.txt": uenv, "/extra_uEnv.txt": []byte("os_bc_skip=1\n")}, B, ""},
		// U-Boot falls back on the count alone, upgrade_available or not.
		{"stale count", map[string][]byte{"/resinOS_uEnv.txt": []byte("resin_root_part=2\nupgrade_available=0\n"), "/bootcount.env": []byte("bootcount=5\n")}, B, "bootcount=5\n"},
	} {
		d := dir(t, tc.files)
		s, err := bootsim.Boot(b, d)
		if err != nil || s != tc.slot {
			t.Errorf("%s: boots %s, %v, want %s", tc.name, s, err, tc.slot)
		}
		got, _ := d.ReadFile("/bootcount.env")
		if string(got) != tc.count {
			t.Errorf("%s: bootcount.env %q, want %q", tc.name, got, tc.count)
		}
	}
}

func TestBalenaBootloader(t *testing.T) {
	b := bootenv.BalenaBootloader(parts)
	d := dir(t, map[string][]byte{"/bootenv": grubEnv(t, map[string]string{"resin_root_part": "B", "upgrade_available": "1", "bootcount": "2", "kernel_override_abi": "x"})})
	if s, _ := boot(t, b, d); s != A {
		t.Errorf("third boot of B: %s", s)
	}
	got, _ := d.ReadFile("/bootenv")
	if want := grubEnv(t, map[string]string{"resin_root_part": "B", "upgrade_available": "1", "bootcount": "3", "kernel_override_abi": "x"}); string(got) != string(want) {
		t.Errorf("/bootenv after boot: %q", got[:100])
	}
	if _, err := bootsim.Boot(b, dir(t, nil)); err == nil {
		t.Error("boot without /bootenv succeeded")
	}
}

func TestUnknownBackend(t *testing.T) {
	if _, err := bootsim.Boot(other{}, dir(t, nil)); err == nil {
		t.Error("boot of an unknown backend succeeded")
	}
}

type other struct{ bootenv.Backend }

func (other) Name() string { return "lilo" }
