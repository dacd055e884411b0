package bootenv_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/bootenv/bootsim"
	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/bootfs"
	"github.com/hostos/hostos/rootfs/fat"
	"github.com/hostos/hostos/tests/testtool"
)

var parts = bootenv.Parts{A: 2, B: 3}

// kind is one bootloader under test: its backend and what a fresh image holds for it (hostapp/build).
type kind struct {
	name  string
	b     bootenv.Backend
	fresh map[string][]byte
	// fellBack is the bootcount with which the bootloader has fallen back to the old root.
	fellBack int
}

func grubEnv(t testing.TB, vars map[string]string) []byte {
	t.Helper()
	b, err := bootenv.EncodeGrubEnv(vars)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kinds(t testing.TB) []kind {
	fresh := grubEnv(t, map[string]string{"bootcount": "0", "resin_root_part": "2", "upgrade_available": "0"})
	return []kind{
		{"grub", bootenv.Grub(parts), map[string][]byte{"/grub/grubenv": fresh, "/EFI/BOOT/grubenv": fresh}, 2},
		{"grub-efi", bootenv.GrubEFI(parts), map[string][]byte{"/grub/grubenv": fresh, "/EFI/BOOT/grubenv": fresh}, 2},
		{"u-boot", bootenv.UBoot(parts), map[string][]byte{}, 4},
		{"balena-bootloader", bootenv.BalenaBootloader(parts), map[string][]byte{"/bootenv": grubEnv(t, map[string]string{"resin_root_part": "A"})}, 3},
	}
}

// dir is a boot partition in a temporary directory holding files.
func dir(t testing.TB, files map[string][]byte) bootfs.Dir {
	t.Helper()
	d := bootfs.Dir(t.TempDir())
	put(t, d, files)
	return d
}

func put(t testing.TB, fsys bootfs.FS, files map[string][]byte) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := fsys.MkdirAll(filepath.Dir(name), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := fsys.WriteFile(name, files[name], time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
}

var errPowerLoss = errors.New("power lost")

// recorder is a boot partition that records the files written and, from the cut-th write on, loses power:
// every further WriteFile fails without writing.
type recorder struct {
	bootfs.FS
	cut    int // -1: never
	writes []string
}

func (r *recorder) WriteFile(name string, data []byte, mtime time.Time) error {
	if r.cut >= 0 && len(r.writes) >= r.cut {
		return errPowerLoss
	}
	r.writes = append(r.writes, name)
	return r.FS.WriteFile(name, data, mtime)
}

func (r *recorder) Remove(name string) error {
	if r.cut >= 0 && len(r.writes) >= r.cut {
		return errPowerLoss
	}
	r.writes = append(r.writes, "remove "+name)
	return r.FS.Remove(name)
}

func TestSlot(t *testing.T) {
	if bootenv.SlotA.Other() != bootenv.SlotB || bootenv.SlotB.Other() != bootenv.SlotA || bootenv.Slot("C").Other() != "" {
		t.Error("Other does not swap A and B")
	}
	if parts.Number(bootenv.SlotA) != 2 || parts.Number(bootenv.SlotB) != 3 || parts.Number("") != 0 {
		t.Error("Number")
	}
	if s, ok := parts.Slot(3); !ok || s != bootenv.SlotB {
		t.Error("Slot(3)")
	}
	if _, ok := parts.Slot(4); ok {
		t.Error("Slot(4) is a root")
	}
}

var envs = []bootenv.Env{
	{Root: bootenv.SlotB, UpgradeAvailable: true},
	{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: 1},
	{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: 12},
	{Root: bootenv.SlotB},
	{Root: bootenv.SlotA, UpgradeAvailable: true, BootCount: 3},
	{Root: bootenv.SlotA},
}

// roundTrip checks that a fresh image reads as root A and that every Env reads back as written.
func roundTrip(t *testing.T, k kind, fsys bootfs.FS) {
	t.Helper()
	got, err := k.b.Read(fsys)
	if err != nil {
		t.Fatalf("%s: read fresh image: %v", k.name, err)
	}
	if want := (bootenv.Env{Root: bootenv.SlotA}); got != want {
		t.Errorf("%s: fresh image reads %+v, want %+v", k.name, got, want)
	}
	for _, e := range envs {
		if err := k.b.Write(fsys, e); err != nil {
			t.Fatalf("%s: write %+v: %v", k.name, e, err)
		}
		got, err := k.b.Read(fsys)
		if err != nil {
			t.Fatalf("%s: read back %+v: %v", k.name, e, err)
		}
		if got != e {
			t.Errorf("%s: wrote %+v, read %+v", k.name, e, got)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, k := range kinds(t) {
		roundTrip(t, k, dir(t, k.fresh))
	}
}

// TestRoundTripFAT runs the round trip and a few simulated boots on a real FAT file system, then has
// fsck.vfat check it and mtools and grub-editenv read the grubenv back.
func TestRoundTripFAT(t *testing.T) {
	testtool.Need(t, "mkfs.vfat")
	fsck := testtool.Need(t, "fsck.vfat")
	mcopy := testtool.Need(t, "mcopy")
	editenv := testtool.Need(t, "grub-editenv")
	for _, k := range kinds(t) {
		img := filepath.Join(t.TempDir(), "boot.img")
		const size = 16 << 20
		d, err := disk.Create(img, size)
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
		if err := fat.Make(context.Background(), img, 0, size, fat.Options{Bits: 16, Label: "resin-boot"}); err != nil {
			t.Fatal(err)
		}
		d, err = disk.Open(img, true)
		if err != nil {
			t.Fatal(err)
		}
		fsys, err := bootfs.OpenFAT(d, partition.Partition{Number: 1, Start: 0, Size: size})
		if err != nil {
			t.Fatal(err)
		}
		put(t, fsys, k.fresh)
		roundTrip(t, k, fsys)
		if err := k.b.Write(fsys, bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true}); err != nil {
			t.Fatal(err)
		}
		if got, err := bootsim.Boot(k.b, fsys); err != nil || got != bootenv.SlotB {
			t.Errorf("%s on fat: boot: %s, %v, want B", k.name, got, err)
		}
		if e, err := k.b.Read(fsys); err != nil || e.BootCount != 1 {
			t.Errorf("%s on fat: after a boot %+v, %v, want bootcount 1", k.name, e, err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(fsck, "-n", img).CombinedOutput(); err != nil {
			t.Errorf("%s: fsck.vfat -n: %v\n%s", k.name, err, out)
		}
		for _, name := range k.b.Files() {
			if _, ok := k.fresh[name]; !ok || !strings.HasSuffix(name, "env") || k.name == "u-boot" {
				continue
			}
			if eb, ok := k.b.(interface{ EnvFile() string }); ok && eb.EnvFile() != name {
				// A write leaves the one grubenv the layout's GRUB loads (balenaOS's rollback scripts stop at two).
				if err := exec.Command(mcopy, "-n", "-i", img, "::"+name, "-").Run(); err == nil {
					t.Errorf("%s: %s is still there beside %s", k.name, name, eb.EnvFile())
				}
				continue
			}
			out, err := exec.Command(mcopy, "-n", "-i", img, "::"+name, "-").Output()
			if err != nil {
				t.Fatalf("%s: mcopy %s: %v", k.name, name, err)
			}
			got := editenvList(t, editenv, out)
			want := map[string]string{"resin_root_part": "3", "upgrade_available": "1", "bootcount": "1"}
			if k.name == "balena-bootloader" {
				want["resin_root_part"] = "B"
			}
			if !maps.Equal(got, want) {
				t.Errorf("%s: grub-editenv reads %s on fat as %q, want %q", k.name, name, got, want)
			}
		}
	}
}

// editenvList has grub-editenv list the environment block env.
func editenvList(t *testing.T, editenv string, env []byte) map[string]string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(p, env, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(editenv, p, "list").Output()
	if err != nil {
		t.Fatalf("grub-editenv list: %v", err)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			t.Fatalf("grub-editenv list: line %q", sc.Text())
		}
		vars[k] = v
	}
	return vars
}

// TestGrubEditenv has grub-editenv list every environment block the GRUB and balena bootloader backends
// write, and checks that variables they do not own survive.
func TestGrubEditenv(t *testing.T) {
	editenv := testtool.Need(t, "grub-editenv")
	extra := grubEnv(t, map[string]string{"bootcount": "0", "resin_root_part": "2", "upgrade_available": "0", "extra_os_cmdline": "quiet splash", "x": `a\b`})
	for _, tc := range []struct {
		b     bootenv.Backend
		files map[string][]byte
		want  map[string]map[string]string
	}{
		{bootenv.Grub(parts), map[string][]byte{"/grub/grubenv": extra, "/EFI/BOOT/grubenv": extra}, map[string]map[string]string{
			"/grub/grubenv": {"bootcount": "0", "resin_root_part": "3", "upgrade_available": "1", "extra_os_cmdline": "quiet splash", "x": `a\b`},
		}},
		{bootenv.GrubEFI(parts), map[string][]byte{"/grub/grubenv": extra, "/EFI/BOOT/grubenv": extra}, map[string]map[string]string{
			"/EFI/BOOT/grubenv": {"bootcount": "0", "resin_root_part": "3", "upgrade_available": "1", "extra_os_cmdline": "quiet splash", "x": `a\b`},
		}},
		// balenaOS's EFI update hook deleted /grub: it stays deleted.
		{bootenv.Grub(parts), map[string][]byte{"/EFI/BOOT/grubenv": extra}, map[string]map[string]string{
			"/EFI/BOOT/grubenv": {"bootcount": "0", "resin_root_part": "3", "upgrade_available": "1", "extra_os_cmdline": "quiet splash", "x": `a\b`},
		}},
		{bootenv.BalenaBootloader(parts), map[string][]byte{"/bootenv": grubEnv(t, map[string]string{"resin_root_part": "A", "kernel_override_abi": "6.6"})}, map[string]map[string]string{
			"/bootenv": {"bootcount": "0", "resin_root_part": "B", "upgrade_available": "1", "kernel_override_abi": "6.6"},
		}},
	} {
		d := dir(t, tc.files)
		if err := tc.b.Write(d, bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"/grub/grubenv", "/EFI/BOOT/grubenv", "/bootenv"} {
			want, ok := tc.want[name]
			env, err := d.ReadFile(name)
			if !ok {
				if err == nil {
					t.Errorf("%s: %s is still there", tc.b.Name(), name)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := editenvList(t, editenv, env); !maps.Equal(got, want) {
				t.Errorf("%s: grub-editenv reads %s as %q, want %q", tc.b.Name(), name, got, want)
			}
		}
	}
}

// TestUBootFwPrintenv has libubootenv read the U-Boot files. fw_printenv reads a binary environment with a
// CRC; it reads a text file only as the default environment (-f) it falls back to when that CRC is bad, which
// is how this test feeds it resinOS_uEnv.txt and bootcount.env.
func TestUBootFwPrintenv(t *testing.T) {
	printenv := testtool.Need(t, "fw_printenv")
	tmp := t.TempDir()
	bin, cfg := filepath.Join(tmp, "env.bin"), filepath.Join(tmp, "fw_env.config")
	if err := os.WriteFile(bin, make([]byte, 0x4000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(bin+" 0x0 0x4000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := dir(t, map[string][]byte{"/resinOS_uEnv.txt": []byte("# board settings\nextra_os_cmdline=quiet\nresin_root_part=9\n")})
	b := bootenv.UBoot(bootenv.Parts{A: 9, B: 10})
	for _, tc := range []struct {
		e    bootenv.Env
		want map[string]map[string]string
	}{
		{bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: 2}, map[string]map[string]string{
			"/resinOS_uEnv.txt": {"resin_root_part": "a", "upgrade_available": "1", "extra_os_cmdline": "quiet"},
			"/bootcount.env":    {"bootcount": "2"},
		}},
		{bootenv.Env{Root: bootenv.SlotA}, map[string]map[string]string{
			"/resinOS_uEnv.txt": {"resin_root_part": "9", "upgrade_available": "0", "extra_os_cmdline": "quiet"},
			"/bootcount.env":    {"bootcount": "0"},
		}},
	} {
		if err := b.Write(d, tc.e); err != nil {
			t.Fatal(err)
		}
		for name, want := range tc.want {
			out, err := exec.Command(printenv, "-c", cfg, "-f", filepath.Join(string(d), name)).Output()
			if err != nil {
				t.Fatalf("fw_printenv %s: %v", name, err)
			}
			got, err := bootenv.DecodeUEnv(out)
			if err != nil {
				t.Fatalf("decode fw_printenv output %q: %v", out, err)
			}
			if !maps.Equal(got, want) {
				t.Errorf("fw_printenv reads %s as %q, want %q", name, got, want)
			}
		}
	}
}

// TestWriteUnchanged checks that writing the Env a boot partition already holds writes nothing, fresh
// images included.
func TestWriteUnchanged(t *testing.T) {
	for _, k := range kinds(t) {
		d := dir(t, k.fresh)
		r := &recorder{FS: d, cut: -1}
		if err := k.b.Write(r, bootenv.Env{Root: bootenv.SlotA}); err != nil {
			t.Fatal(err)
		}
		if len(r.writes) != 0 {
			t.Errorf("%s: writing a fresh image's own state wrote %q", k.name, r.writes)
		}
		for _, e := range envs {
			if err := k.b.Write(d, e); err != nil {
				t.Fatal(err)
			}
			if err := k.b.Write(r, e); err != nil {
				t.Fatal(err)
			}
			if len(r.writes) != 0 {
				t.Errorf("%s: writing %+v again wrote %q", k.name, e, r.writes)
			}
		}
	}
	// A U-Boot fresh image stays without files.
	d := dir(t, nil)
	if err := bootenv.UBoot(parts).Write(d, bootenv.Env{Root: bootenv.SlotA}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(string(d)); len(ents) != 0 {
		t.Errorf("writing the default U-Boot state created %v", ents)
	}
}

// TestWriteOrder pins the order of the files in a Write (see the backends' documentation for why).
func TestWriteOrder(t *testing.T) {
	for _, k := range kinds(t) {
		r := &recorder{FS: dir(t, k.fresh), cut: -1}
		if err := k.b.Write(r, bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true}); err != nil {
			t.Fatal(err)
		}
		want := map[string][]string{
			"grub":              {"/grub/grubenv", "remove /EFI/BOOT/grubenv"},
			"grub-efi":          {"/EFI/BOOT/grubenv", "remove /grub/grubenv"},
			"u-boot":            {"/resinOS_uEnv.txt"}, // bootcount 0 needs no bootcount.env
			"balena-bootloader": {"/bootenv"},
		}[k.name]
		if !slices.Equal(r.writes, want) {
			t.Errorf("%s: wrote %q, want %q", k.name, r.writes, want)
		}
	}
	// U-Boot resets a stale count before it switches the root.
	r := &recorder{FS: dir(t, map[string][]byte{"/bootcount.env": []byte("bootcount=6\n\x00")}), cut: -1}
	if err := bootenv.UBoot(parts).Write(r, bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"/bootcount.env", "/resinOS_uEnv.txt"}; !slices.Equal(r.writes, want) {
		t.Errorf("u-boot: wrote %q, want %q", r.writes, want)
	}
}

func TestFiles(t *testing.T) {
	for _, k := range kinds(t) {
		for name := range k.fresh {
			if !slices.Contains(k.b.Files(), name) {
				t.Errorf("%s: Files %q lacks %s", k.name, k.b.Files(), name)
			}
		}
	}
	if got := bootenv.UBoot(parts).Files(); !slices.Equal(got, []string{"/resinOS_uEnv.txt", "/bootcount.env"}) {
		t.Errorf("u-boot Files %q", got)
	}
}

func TestForBootloader(t *testing.T) {
	for name, want := range map[string]string{
		"grub": "grub", "grub-efi": "grub", "u-boot": "u-boot", "rpi": "u-boot", "balena-bootloader": "balena-bootloader",
	} {
		b, err := bootenv.ForBootloader(name, parts)
		if err != nil || b.Name() != want {
			t.Errorf("ForBootloader(%q) = %v, %v, want %s", name, b, err, want)
		}
	}
	if _, err := bootenv.ForBootloader("lilo", parts); err == nil || !strings.Contains(err.Error(), "lilo") {
		t.Errorf("ForBootloader(lilo): %v", err)
	}
}

func TestDetect(t *testing.T) {
	env := grubEnv(t, map[string]string{"resin_root_part": "2"})
	uenv := []byte("resin_root_part=2\n")
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{nil, "u-boot"},
		{[]string{"/config.json"}, "u-boot"},
		{[]string{"/resinOS_uEnv.txt"}, "u-boot"},
		{[]string{"/bootcount.env"}, "u-boot"},
		{[]string{"/grub/grubenv"}, "grub"},
		{[]string{"/EFI/BOOT/grubenv"}, "grub"},
		{[]string{"/grub/grubenv", "/EFI/BOOT/grubenv", "/resinOS_uEnv.txt"}, "grub"},
		{[]string{"/bootenv"}, "balena-bootloader"},
		{[]string{"/bootenv", "/resinOS_uEnv.txt"}, "balena-bootloader"},
	} {
		files := map[string][]byte{}
		for _, f := range tc.files {
			files[f] = env
			if !strings.HasSuffix(f, "env") {
				files[f] = uenv
			}
		}
		b, err := bootenv.Detect(dir(t, files), parts)
		if err != nil || b.Name() != tc.want {
			t.Errorf("Detect(%q) = %v, %v, want %s", tc.files, b, err, tc.want)
		}
	}
}

func TestReadErrors(t *testing.T) {
	g := func(vars map[string]string) map[string][]byte {
		return map[string][]byte{"/grub/grubenv": grubEnv(t, vars)}
	}
	be := func(vars map[string]string) map[string][]byte {
		return map[string][]byte{"/bootenv": grubEnv(t, vars)}
	}
	for _, tc := range []struct {
		b     bootenv.Backend
		files map[string][]byte
		err   string
	}{
		{bootenv.Grub(parts), nil, "no grub environment"},
		{bootenv.Grub(parts), g(map[string]string{"resin_root_part": "5"}), "resin_root_part=5 is neither root partition"},
		{bootenv.Grub(parts), g(map[string]string{"resin_root_part": "a"}), `resin_root_part="a"`},
		{bootenv.Grub(parts), g(map[string]string{"resin_root_part": "02"}), `resin_root_part="02"`},
		{bootenv.Grub(parts), g(map[string]string{"resin_root_part": "2", "upgrade_available": "7"}), `upgrade_available="7", want 0 or 1`},
		{bootenv.Grub(parts), g(map[string]string{"resin_root_part": "2", "bootcount": "-1"}), `bootcount="-1"`},
		{bootenv.Grub(parts), g(map[string]string{"resin_root_part": "2", "bootcount": "1x"}), `bootcount="1x"`},
		{bootenv.Grub(parts), map[string][]byte{"/grub/grubenv": []byte("bootcount=1\n")}, "/grub/grubenv: grub environment block: missing signature"},
		{bootenv.Grub(parts), map[string][]byte{"/grub/grubenv": grubEnv(t, nil), "/EFI/BOOT/grubenv": []byte("# GRUB")}, "/EFI/BOOT/grubenv: grub environment block: missing signature"},
		{bootenv.UBoot(parts), map[string][]byte{"/resinOS_uEnv.txt": []byte("resin_root_part=4\n")}, "resin_root_part=4 (partition 4) is neither root partition"},
		{bootenv.UBoot(parts), map[string][]byte{"/resinOS_uEnv.txt": []byte("resin_root_part=zz\n")}, `root partition "zz"`},
		{bootenv.UBoot(parts), map[string][]byte{"/resinOS_uEnv.txt": []byte("upgrade_available=yes\n")}, `upgrade_available="yes"`},
		{bootenv.UBoot(parts), map[string][]byte{"/resinOS_uEnv.txt": []byte("resin_root_part\n")}, "/resinOS_uEnv.txt: u-boot environment line 1"},
		{bootenv.UBoot(parts), map[string][]byte{"/bootcount.env": []byte("bootcount=x\n")}, `/bootcount.env: bootcount="x"`},
		{bootenv.UBoot(parts), map[string][]byte{"/bootcount.env": []byte("bootcount=0a\n")}, `bootcount="0a"`},
		{bootenv.UBoot(parts), map[string][]byte{"/bootcount.env": []byte("bootcount=\n")}, `bootcount=""`},
		{bootenv.BalenaBootloader(parts), nil, "no balena bootloader environment /bootenv"},
		{bootenv.BalenaBootloader(parts), be(map[string]string{"bootcount": "0"}), "/bootenv: no resin_root_part"},
		{bootenv.BalenaBootloader(parts), be(map[string]string{"resin_root_part": "2"}), `resin_root_part="2", want A or B`},
		{bootenv.BalenaBootloader(parts), be(map[string]string{"resin_root_part": "A", "upgrade_available": "2"}), `upgrade_available="2"`},
		{bootenv.Grub(bootenv.Parts{A: 2, B: 2}), g(map[string]string{"resin_root_part": "2"}), "root partitions A=2 B=2"},
	} {
		_, err := tc.b.Read(dir(t, tc.files))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s %q: err %v, want one containing %q", tc.b.Name(), slices.Sorted(maps.Keys(tc.files)), err, tc.err)
		}
	}
	for _, k := range kinds(t) {
		if _, err := k.b.Read(dir(t, nil)); k.name != "u-boot" && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: read of an empty boot partition: %v, want fs.ErrNotExist", k.name, err)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	for _, k := range kinds(t) {
		for _, e := range []bootenv.Env{{}, {Root: "C"}, {Root: bootenv.SlotA, BootCount: -1}} {
			if err := k.b.Write(dir(t, k.fresh), e); err == nil {
				t.Errorf("%s: write %+v succeeded", k.name, e)
			}
		}
	}
	// A variable that no U-Boot text line can carry is an error, not silently lost.
	d := dir(t, map[string][]byte{"/resinOS_uEnv.txt": []byte("bootargs=a\\\nb\n")})
	if err := bootenv.UBoot(parts).Write(d, bootenv.Env{Root: bootenv.SlotB}); err == nil || !strings.Contains(err.Error(), "bootargs") {
		t.Errorf("write beside a multi-line variable: %v", err)
	}
}

// TestGrubRead covers which of the two grubenv blocks Read believes.
func TestGrubRead(t *testing.T) {
	env := func(root, ua, bc string) []byte {
		return grubEnv(t, map[string]string{"resin_root_part": root, "upgrade_available": ua, "bootcount": bc})
	}
	for _, tc := range []struct {
		main, efi []byte
		want      bootenv.Env
	}{
		{env("3", "1", "1"), nil, bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: 1}},
		{nil, env("3", "1", "1"), bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: 1}},
		// With both, the layout's file (here the legacy one) holds the state; the other is stale.
		{env("3", "1", "0"), env("3", "1", "2"), bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true}},
		{env("2", "0", "0"), env("3", "1", "0"), bootenv.Env{Root: bootenv.SlotA}},
		// What balenaOS's rollback-stop leaves: 1025 bytes, "bootcount=0 ".
		{bytes.Replace(env("3", "0", "0"), []byte("bootcount=0\n"), []byte("bootcount=0 \n"), 1), nil, bootenv.Env{Root: bootenv.SlotB}},
		{grubEnv(t, nil), nil, bootenv.Env{Root: bootenv.SlotA}},
	} {
		files := map[string][]byte{}
		if tc.main != nil {
			files["/grub/grubenv"] = tc.main
		}
		if tc.efi != nil {
			files["/EFI/BOOT/grubenv"] = tc.efi
		}
		got, err := bootenv.Grub(parts).Read(dir(t, files))
		if err != nil || got != tc.want {
			t.Errorf("main %q efi %q: %+v, %v, want %+v", tc.main[:60], tc.efi, got, err, tc.want)
		}
	}
}

func TestUBootRead(t *testing.T) {
	for _, tc := range []struct {
		uenv, bc string // "" for a missing file
		want     bootenv.Env
	}{
		{"", "", bootenv.Env{Root: bootenv.SlotA}},
		{"resin_root_part=3\nupgrade_available=1\n", "", bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true}},
		{"resin_root_part=0x3\nupgrade_available=1\n", "bootcount=1\n\x00", bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: 1}},
		{"upgrade_available=0\n", "bootcount=3\n\x00", bootenv.Env{Root: bootenv.SlotA, BootCount: 3}},
		// U-Boot's setexpr counts in hexadecimal.
		{"resin_root_part=3\nupgrade_available=1\n", "bootcount=a\n\x00", bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: 10}},
		{"resin_root_part=3\nupgrade_available=1\n", "bootcount=1f\n", bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: 31}},
		{"resin_root_part=3\nupgrade_available=1\n", "bootcount=10\n", bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: 10}},
		// balenaOS's rollback-stop deletes bootcount.env.
		{"resin_root_part=3\nupgrade_available=0\n", "", bootenv.Env{Root: bootenv.SlotB}},
	} {
		files := map[string][]byte{}
		if tc.uenv != "" {
			files["/resinOS_uEnv.txt"] = []byte(tc.uenv)
		}
		if tc.bc != "" {
			files["/bootcount.env"] = []byte(tc.bc)
		}
		got, err := bootenv.UBoot(parts).Read(dir(t, files))
		if err != nil || got != tc.want {
			t.Errorf("uEnv %q bootcount %q: %+v, %v, want %+v", tc.uenv, tc.bc, got, err, tc.want)
		}
	}
	// Partition numbers are hexadecimal: 10 is "a".
	d := dir(t, map[string][]byte{"/resinOS_uEnv.txt": []byte("resin_root_part=a\n")})
	if e, err := bootenv.UBoot(bootenv.Parts{A: 9, B: 10}).Read(d); err != nil || e.Root != bootenv.SlotB {
		t.Errorf("resin_root_part=a with B=10: %+v, %v", e, err)
	}
}

// TestPowerLoss cuts power after every prefix of the writes of each transition the A/B engine makes. After
// each, the boot partition must read back, boot the old or the new root, and never brick the device: powered
// on again and again without the OS stepping in, it must reach a root that works. The new root of a switch
// is taken to be broken (so the bootloader must fall back), and so is the root a rollback leaves.
func TestPowerLoss(t *testing.T) {
	for _, k := range kinds(t) {
		for _, tr := range []struct {
			name     string
			from, to bootenv.Env
			broken   bootenv.Slot
		}{
			{"switch", bootenv.Env{Root: bootenv.SlotA}, bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true}, bootenv.SlotB},
			{"commit", bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: 1}, bootenv.Env{Root: bootenv.SlotB}, ""},
			{"health rollback", bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: 1}, bootenv.Env{Root: bootenv.SlotA}, bootenv.SlotB},
			// After the bootloader fell back, the OS makes the fallback permanent.
			{"altboot rollback", bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: k.fellBack}, bootenv.Env{Root: bootenv.SlotA}, bootenv.SlotB},
			{"switch back", bootenv.Env{Root: bootenv.SlotB}, bootenv.Env{Root: bootenv.SlotA, UpgradeAvailable: true}, bootenv.SlotA},
		} {
			for cut := 0; ; cut++ {
				d := dir(t, k.fresh)
				if err := k.b.Write(d, tr.from); err != nil {
					t.Fatal(err)
				}
				err := k.b.Write(&recorder{FS: d, cut: cut}, tr.to)
				if err != nil && !errors.Is(err, errPowerLoss) {
					t.Fatalf("%s %s: %v", k.name, tr.name, err)
				}
				at := fmt.Sprintf("%s %s, power lost after %d writes", k.name, tr.name, cut)
				if err == nil {
					at = fmt.Sprintf("%s %s, complete", k.name, tr.name)
				}
				got, rerr := k.b.Read(d)
				if rerr != nil {
					t.Fatalf("%s: read: %v", at, rerr)
				}
				if err == nil && got != tr.to {
					t.Errorf("%s: reads %+v, want %+v", at, got, tr.to)
				}
				// What the old and the new state boot, fallbacks included.
				allowed := map[bootenv.Slot]bool{tr.from.Root: true, tr.to.Root: true, bootOf(t, k, tr.from): true, bootOf(t, k, tr.to): true}
				var seq []bootenv.Slot
				for range 8 {
					slot, berr := bootsim.Boot(k.b, d)
					if berr != nil {
						t.Fatalf("%s (%+v): boot %d: %v", at, got, len(seq)+1, berr)
					}
					seq = append(seq, slot)
				}
				if !allowed[seq[0]] {
					t.Errorf("%s (%+v): boots %s, neither the old root nor the new one", at, got, seq[0])
				}
				if !slices.ContainsFunc(seq, func(s bootenv.Slot) bool { return s != tr.broken }) {
					t.Errorf("%s (%+v): boots %s, never a working root", at, got, seq)
				}
				if err == nil {
					break
				}
			}
		}
	}
}

// bootOf is the root the next power-on boots with e on a fresh image of kind k.
func bootOf(t *testing.T, k kind, e bootenv.Env) bootenv.Slot {
	t.Helper()
	d := dir(t, k.fresh)
	if err := k.b.Write(d, e); err != nil {
		t.Fatal(err)
	}
	s, err := bootsim.Boot(k.b, d)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestGrubBootCountScript has grub-script-check parse the script (with the menu entry its documentation
// suggests) and pins the file and partitions it uses to the Grub backend's.
func TestGrubBootCountScript(t *testing.T) {
	check := testtool.Need(t, "grub-script-check")
	tmp := t.TempDir()
	for _, tc := range []struct {
		cfg string
		ok  bool
	}{
		{bootenv.GrubBootCountScript + "menuentry 'hostos' {\n\tlinux /boot/bzImage root=UUID=${hostos_root_uuid} rootwait\n}\n", true},
		{strings.Replace(bootenv.GrubBootCountScript, "\tfi\nfi\n", "\tfi\n", 1), false}, // so the check is real
	} {
		p := filepath.Join(tmp, "grub.cfg")
		if err := os.WriteFile(p, []byte(tc.cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(check, p).CombinedOutput()
		if (err == nil) != tc.ok {
			t.Errorf("grub-script-check: %v, want ok %v\n%s", err, tc.ok, out)
		}
	}
	for _, s := range []string{
		"load_env --file /grub/grubenv resin_root_part upgrade_available bootcount\n",
		"save_env --file /grub/grubenv bootcount\n",
		"set resin_root_part=2\n", `if [ "${resin_root_part}" = "2" ]; then`, "set hostos_root_part=3\n",
	} {
		if !strings.Contains(bootenv.GrubBootCountScript, s) {
			t.Errorf("GrubBootCountScript lacks %q", s)
		}
	}
	if bootenv.Grub(parts).Files()[0] != "/grub/grubenv" {
		t.Error("the script and the backend disagree on the grubenv")
	}
}

// FuzzRead feeds every backend arbitrary environment files: Read must not panic, and what it reads must
// write and read back unchanged, keeping the file's other variables.
func FuzzRead(f *testing.F) {
	f.Add([]byte("resin_root_part=3\nupgrade_available=1\n"), []byte("bootcount=a\n\x00"), "3", "1", "2")
	f.Add([]byte("# c\nresin_root_part=0xA\nx=\\\\\n"), []byte("bootcount=10"), "B", "0", "0")
	f.Add([]byte{}, []byte{}, "2", "", "")
	f.Fuzz(func(t *testing.T, uenv, bootcount []byte, root, ua, bc string) {
		grubVars := map[string]string{"resin_root_part": root, "upgrade_available": ua, "bootcount": bc, "other": root + ua}
		env, err := bootenv.EncodeGrubEnv(grubVars)
		if err != nil {
			return
		}
		for _, tc := range []struct {
			b     bootenv.Backend
			files map[string][]byte
		}{
			{bootenv.Grub(parts), map[string][]byte{"/grub/grubenv": env}},
			{bootenv.BalenaBootloader(parts), map[string][]byte{"/bootenv": env}},
			{bootenv.UBoot(bootenv.Parts{A: 2, B: 10}), map[string][]byte{"/resinOS_uEnv.txt": uenv, "/bootcount.env": bootcount}},
		} {
			d := mem{}
			maps.Copy(d, tc.files)
			e, err := tc.b.Read(d)
			if err != nil {
				continue
			}
			if err := tc.b.Write(d, e); err != nil {
				if tc.b.Name() == "u-boot" { // variables a text line cannot carry
					continue
				}
				t.Fatalf("%s: write back %+v: %v", tc.b.Name(), e, err)
			}
			if again, err := tc.b.Read(d); err != nil || again != e {
				t.Fatalf("%s: read %+v, wrote it, read %+v, %v", tc.b.Name(), e, again, err)
			}
		}
	})
}

// mem is a boot partition in memory, for the fuzz target (a directory's syncs make it crawl).
type mem map[string][]byte

func (m mem) ReadFile(name string) ([]byte, error) {
	if b, ok := m[name]; ok {
		return slices.Clone(b), nil
	}
	return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
}

func (m mem) WriteFile(name string, data []byte, _ time.Time) error {
	m[name] = slices.Clone(data)
	return nil
}

func (m mem) MkdirAll(string, time.Time) error       { return nil }
func (m mem) Remove(name string) error               { delete(m, name); return nil }
func (m mem) Free() int64                            { return 1 << 30 }
func (m mem) BlockSize() int64                       { return 512 }
func (m mem) ModTime(name string) (time.Time, error) { return time.Time{}, nil }

// TestGrubLayout: the grubenv GRUB loads is the one balenaOS's 99-resin-grub keeps for the way the board
// boots, unless the grub.cfg is hostos's own boot-count script, which names /grub/grubenv.
func TestGrubLayout(t *testing.T) {
	script := []byte(bootenv.GrubBootCountScript)
	for _, tc := range []struct {
		files map[string][]byte
		efi   bool
		want  string
	}{
		{nil, false, "/grub/grubenv"},
		{nil, true, "/EFI/BOOT/grubenv"},
		{map[string][]byte{"/EFI/BOOT/grub.cfg": []byte("load_env\n")}, true, "/EFI/BOOT/grubenv"},
		{map[string][]byte{"/EFI/BOOT/grub.cfg": script}, true, "/grub/grubenv"},
		{map[string][]byte{"/grub/grub.cfg": script}, false, "/grub/grubenv"},
	} {
		b := bootenv.GrubLayout(dir(t, tc.files), parts, tc.efi)
		if got := b.(interface{ EnvFile() string }).EnvFile(); got != tc.want {
			t.Errorf("%q efi=%v: %s, want %s", slices.Sorted(maps.Keys(tc.files)), tc.efi, got, tc.want)
		}
	}
	if b, _ := bootenv.ForBootloader("grub-efi", parts); b.(interface{ EnvFile() string }).EnvFile() != "/EFI/BOOT/grubenv" {
		t.Error("grub-efi device types keep /EFI/BOOT/grubenv")
	}
}
