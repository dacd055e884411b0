//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/bootenv/bootsim"
	"github.com/hostos/hostos/rootfs/bootfs"
)

// ubootBin is Debian's U-Boot for QEMU's arm64 virt machine (u-boot-qemu).
const ubootBin = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"

// ubootScript is what the arm64 image boots: hostos's boot.scr, with the guest's hostos.root (the partition
// U-Boot chose; resin_root_part is hexadecimal, the same digits for 2 and 3).
var ubootScript = bootenv.UBootScript{Kernel: "/Image", Initrd: "/initrd.img",
	Cmdline: "console=ttyAMA0 panic=1 quiet hostos.root=${resin_root_part}"}

// arm64 boots Debian's U-Boot, whose distro_bootcmd runs hostos's boot.scr, from an msdos image.
var arm64 = &arch{
	name: "arm64", deviceType: "qemu-virt-arm64", dataPart: 6,
	tools: []string{"qemu-system-aarch64", "mkimage", "mdel"},
	files: []string{ubootBin},
	bootFiles: func(t testing.TB, deploy, kernel string) []string {
		scr, err := bootenv.CompileUBootScript(context.Background(), ubootScript, "arm64")
		if err != nil {
			t.Fatal(err)
		}
		writeFile(filepath.Join(deploy, "boot.scr"), string(scr), 0o644)
		copyFile(kernel, filepath.Join(deploy, "Image"), 0o644) // Debian's arm64 vmlinuz is an uncompressed Image
		return []string{"boot.scr:/boot.scr", "Image:/Image", "initrd.img:/initrd.img"}
	},
}

// fatImage is the mtools image argument for the boot partition.
func (v *vm) fatImage() string { return fmt.Sprintf("%s@@%d", v.image, v.partOffset(1)) }

// bootFile reads a file of the boot partition with mtype; ok is false when it does not exist.
func (v *vm) bootFile(name string) (content string, ok bool) {
	out, err := exec.Command("mtype", "-i", v.fatImage(), "::/"+name).Output()
	if err != nil {
		return "", false
	}
	return string(out), true
}

// putBootFile writes (or with ok false deletes) a file of the boot partition with mcopy / mdel.
func (v *vm) putBootFile(name string, content []byte, ok bool) {
	v.t.Helper()
	if !ok {
		exec.Command("mdel", "-i", v.fatImage(), "::/"+name).Run()
		return
	}
	p := filepath.Join(v.dir, "put-"+name)
	must(os.WriteFile(p, content, 0o644))
	run(v.t, "", "mcopy", "-o", "-i", v.fatImage(), p, "::/"+name)
}

// ubootEnv is what U-Boot's env import makes of resinOS_uEnv.txt and bootcount.env as the FAT holds them
// (read with mtools), with the boot script's defaults for what they lack.
func (v *vm) ubootEnv() map[string]string {
	v.t.Helper()
	env := map[string]string{"resin_root_part": "2", "upgrade_available": "0", "bootcount": "0"}
	for _, f := range []string{"resinOS_uEnv.txt", "bootcount.env"} {
		c, ok := v.bootFile(f)
		if !ok {
			continue
		}
		vars, err := bootenv.DecodeUEnv([]byte(c))
		if err != nil {
			v.t.Fatalf("%s on the FAT: %v (%q)", f, err, c)
		}
		for k, val := range vars {
			env[k] = val
		}
	}
	return env
}

// ubootLines are the "hostos-uboot: " lines U-Boot's boot script printed, in order, without the prefix.
func (v *vm) ubootLines() []string {
	b, _ := os.ReadFile(v.log)
	return ubootLines(b)
}

func ubootLines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\r", "\n"), "\n") {
		if _, m, ok := strings.Cut(l, "hostos-uboot: "); ok {
			out = append(out, strings.TrimSpace(m))
		}
	}
	return out
}

// wantUBoot checks, on arm64, U-Boot's decisions over the whole scenario (exactly these, in order) and the
// environment files on the FAT afterwards. On amd64 it does nothing.
func (v *vm) wantUBoot(decisions []string, root, upgrade, bootcount string) {
	v.t.Helper()
	if v.e.arch != arm64 {
		return
	}
	if got := v.ubootLines(); strings.Join(got, "\n") != strings.Join(decisions, "\n") {
		v.t.Fatalf("U-Boot's decisions:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(decisions, "\n  "))
	}
	env := v.ubootEnv()
	if env["resin_root_part"] != root || env["upgrade_available"] != upgrade || env["bootcount"] != bootcount {
		v.t.Fatalf("FAT environment: %v, want resin_root_part=%s upgrade_available=%s bootcount=%s", env, root, upgrade, bootcount)
	}
}

// bootsimAgainstUBoot boots the real U-Boot and hostos's boot.scr on boot partitions holding given env
// files, without a kernel (the script resets, which ends QEMU under -no-reboot), and checks that bootsim's
// model of U-Boot makes the same decision from the same files: the same root, and the same bootcount.env
// afterwards, byte for byte.
func bootsimAgainstUBoot(t *testing.T, e *env) {
	v := newVM(t, e)
	v.noReboot = true
	run(t, "", "mdel", "-i", v.fatImage(), "::/Image")
	uenv := func(root, upgrade string) string {
		return "resin_root_part=" + root + "\nupgrade_available=" + upgrade + "\n"
	}
	absent := "\x00absent"
	for _, c := range []struct {
		name                   string
		uEnv, bootCount, extra string
	}{
		{"fresh", absent, absent, absent},
		{"committed-B", uenv("3", "0"), "bootcount=0\n", absent},
		{"first-try-B", uenv("3", "1"), "bootcount=0\n", absent},
		{"no-count-file", uenv("3", "1"), absent, absent},
		{"third-try-B", uenv("3", "1"), "bootcount=2\n", absent},
		{"past-limit", uenv("3", "1"), "bootcount=3\n", absent},
		{"stale-count-committed", uenv("2", "0"), "bootcount=5\n", absent},
		{"hex-count", uenv("3", "1"), "bootcount=9\n\x00", absent},
		{"extra-limit", uenv("3", "1"), "bootcount=1\n", "os_bc_lim=1\n"},
	} {
		files := map[string]string{"resinOS_uEnv.txt": c.uEnv, "bootcount.env": c.bootCount, "extra_uEnv.txt": c.extra}
		sim := bootfs.Dir(t.TempDir())
		for name, content := range files {
			v.putBootFile(name, []byte(content), content != absent)
			if content != absent {
				must(sim.WriteFile("/"+name, []byte(content), time.Time{}))
			}
		}
		before := len(v.ubootLines())
		v.boot("", nil)
		lines := v.ubootLines()[before:]
		if len(lines) != 2 || !strings.HasPrefix(lines[1], "cannot load Image") {
			t.Fatalf("%s: U-Boot printed %q, want its decision and the missing kernel", c.name, lines)
		}
		var part, count, upgrade string
		if _, err := fmt.Sscanf(lines[0], "root=%s bootcount=%s upgrade_available=%s", &part, &count, &upgrade); err != nil {
			t.Fatalf("%s: U-Boot's decision %q: %v", c.name, lines[0], err)
		}
		real := map[string]bootenv.Slot{"2": bootenv.SlotA, "3": bootenv.SlotB}[part]
		simSlot, err := bootsim.Boot(bootenv.UBoot(bootenv.Parts{A: 2, B: 3}), sim)
		if err != nil {
			t.Fatalf("%s: bootsim: %v", c.name, err)
		}
		realBC, realOK := v.bootFile("bootcount.env")
		simBC, err := sim.ReadFile("/bootcount.env")
		simOK := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		t.Logf("%s: U-Boot %q, bootcount.env %q; bootsim %s, %q", c.name, lines[0], realBC, simSlot, simBC)
		if real != simSlot {
			t.Errorf("%s: U-Boot booted partition %s (%s), bootsim %s", c.name, part, real, simSlot)
		}
		if realOK != simOK || !bytes.Equal([]byte(realBC), simBC) {
			t.Errorf("%s: bootcount.env after the boot: U-Boot %q (exists %v), bootsim %q (exists %v)", c.name, realBC, realOK, simBC, simOK)
		}
	}
}
