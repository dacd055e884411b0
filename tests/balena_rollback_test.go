package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/update"
	"github.com/hostos/hostos/tests/testtool"
)

// TestBalenaRollbackServices runs balenaOS's own rollback scripts (rollback-altboot, rollback-health,
// rollback-stop and the update hooks, unmodified, through the oracle's chroot harness) against images
// hostos built and updated, and after every step wants hostos status and balena's
// rollback-parse-bootloader to agree on the root, upgrade_available and bootcount, the boot files after a
// rollback to be the old OS's, and the breadcrumbs where balena's scripts leave them. The oracle lives
// outside the repository (HOSTOS_BALENA_ORACLE, by default the shared checkout beside it).
func TestBalenaRollbackServices(t *testing.T) {
	if os.Geteuid() != 0 {
		testtool.Missing(t, "balena's scripts run in a chroot on loop devices: needs root")
	}
	oracle := os.Getenv("HOSTOS_BALENA_ORACLE")
	if oracle == "" {
		oracle = filepath.Join("..", "..", "shared", "oracle", "meta-balena")
	}
	h, err := filepath.Abs(filepath.Join(oracle, "harness"))
	must(t, err)
	if _, err := os.Stat(filepath.Join(h, "boot.sh")); err != nil {
		testtool.Missing(t, "meta-balena oracle harness: %v", err)
	}
	for _, tool := range []string{"losetup", "unshare", "chroot", "jq", "mcopy", "mdel", "grub-editenv", "python3", "sfdisk", "findmnt", "lsblk"} {
		testtool.Need(t, tool)
	}
	uppers := map[string]string{}
	for _, dev := range []string{"x86", "rpi"} {
		uppers[dev] = filepath.Join(t.TempDir(), "upper-"+dev)
		run(t, filepath.Join(h, "mk-upper.sh"), uppers[dev], dev)
	}
	for _, dt := range []struct {
		name, deviceType, dev string
		efi                   bool
		// envFile is the file balena's bootloader counts boots in ("" for U-Boot and balena's bootloader).
		envFile string
		// scenarios to run: every one for legacy GRUB, fewer for the others, to keep the test short (each
		// harness run mounts and copies a whole boot partition). Those that run balena's hooks are left
		// out for balena's bootloader: the harness has only U-Boot's hooks for Raspberry Pis.
		scenarios []string
	}{
		{"grub-legacy", "genericx86-64-ext", "x86", false, "/grub/grubenv", []string{"healthy", "unhealthy", "fallback-balena", "fallback-hostos"}},
		// Not "unhealthy" on EFI: the harness emulates EFI firmware in its own /sys only, and balena's
		// failing-health path mounts a fresh sysfs for the old OS, whose 99-resin-grub then takes the legacy
		// path and deletes /EFI with the environment in it (on a real EFI board it sees the firmware).
		{"grub-efi", "generic-amd64-efi", "x86", true, "/EFI/BOOT/grubenv", []string{"healthy", "fallback-balena"}},
		{"u-boot", "raspberrypi4-64", "rpi", false, "", []string{"unhealthy"}},
		{"balena-bootloader", "raspberrypi5", "rpi", false, "", []string{"healthy", "fallback-hostos"}},
	} {
		t.Run(dt.name, func(t *testing.T) {
			b := newBalenaFixture(t, dt.deviceType)
			d := balenaDevice{t: t, h: h, upper: uppers[dt.dev], dev: dt.dev, efi: dt.efi, fx: b}

			// hostos update -> balena's altboot and health, healthy: committed; then hostos updates again over
			// what balena's rollback-stop wrote, and hostos rollback puts version 2 back.
			if slices.Contains(dt.scenarios, "healthy") {
				t.Run("healthy, update again, hostos rollback", func(t *testing.T) {
					img := d.updated()
					out := d.boot(img, bootenv.SlotB, []string{"RESIN_BOOT=" + b.resinBoot[2]}, viewCmd+"; rollback-altboot; rollback-health; "+viewCmd)
					views := parseViews(t, out, 2)
					d.agree(img, bootenv.SlotB, views[1], bootenv.Env{Root: bootenv.SlotB})
					d.noCrumbs(img, bootenv.SlotB)

					mustHostos(t, nil, nil, "update", "-q", b.bundle[3], "--image", img, "--booted", "B")
					out = d.boot(img, bootenv.SlotB, nil, viewCmd)
					d.agree(img, bootenv.SlotB, parseViews(t, out, 1)[0], bootenv.Env{Root: bootenv.SlotA, UpgradeAvailable: true})
					d.kernel(img, 3)

					mustHostos(t, nil, nil, "rollback", "--image", img, "--booted", "B")
					out = d.boot(img, bootenv.SlotB, nil, viewCmd+"; rollback-altboot; rollback-health; "+viewCmd)
					vs := parseViews(t, out, 2)
					d.agree(img, bootenv.SlotB, vs[0], bootenv.Env{Root: bootenv.SlotB})
					d.agree(img, bootenv.SlotB, vs[1], bootenv.Env{Root: bootenv.SlotB})
					d.kernel(img, 2)
					d.noCrumbs(img, bootenv.SlotB)
				})
			}

			if slices.Contains(dt.scenarios, "unhealthy") {
				// hostos update -> balena health, unhealthy: balena runs the old OS's hooks (the hostapp
				// layout emulated) and switches back; hostos sees version 1 committed with its boot files.
				t.Run("unhealthy", func(t *testing.T) {
					img := d.updated()
					out := d.boot(img, bootenv.SlotB, []string{"RESIN_BOOT=" + b.resinBoot[2], "OLD_RESIN_BOOT=" + b.resinBoot[1],
						"ENGINE=unhealthy", "INIT_STUB=1"}, "rollback-health; "+viewCmd)
					if !strings.Contains(out, "REBOOT requested") {
						t.Fatalf("balena's rollback-health did not reboot:\n%s", out)
					}
					d.agree(img, bootenv.SlotA, parseViews(t, out, 1)[0], bootenv.Env{Root: bootenv.SlotA})
					d.kernel(img, 1)
					d.crumbs(img, bootenv.SlotA, update.HealthTriggered)
				})
			}

			// hostos update -> the bootloader gives up on version 2 -> balena's rollback-altboot makes version
			// 1 final; or hostos's rollback-altboot does, and balena agrees.
			for _, who := range []string{"balena", "hostos"} {
				if !slices.Contains(dt.scenarios, "fallback-"+who) {
					continue
				}
				t.Run("fallback, "+who+" altboot", func(t *testing.T) {
					img := d.updated()
					counted := d.fallback(img, dt.envFile)
					fellBack := bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: counted}
					var view bootenv.Env
					if who == "balena" {
						out := d.boot(img, bootenv.SlotA, []string{"RESIN_BOOT=" + b.resinBoot[1]}, viewCmd+"; rollback-altboot; "+viewCmd)
						vs := parseViews(t, out, 2)
						if vs[0] != fellBack {
							t.Fatalf("after the fallback balena reads %+v, want %+v", vs[0], fellBack)
						}
						view = vs[1]
					} else {
						d.agree(img, bootenv.SlotA, fellBack, fellBack) // hostos's view only: balena's is checked above
						mustHostos(t, nil, nil, "rollback-altboot", "--image", img, "--booted", "A")
						view = parseViews(t, d.boot(img, bootenv.SlotA, nil, viewCmd), 1)[0]
					}
					d.agree(img, bootenv.SlotA, view, bootenv.Env{Root: bootenv.SlotA})
					d.kernel(img, 1)
					d.crumbs(img, bootenv.SlotA, update.AltbootTriggered)
				})
			}
		})
	}
}

// viewCmd prints what balena's rollback-parse-bootloader finds (the root and upgrade_available) and the
// bootcount as balena's shell reads it: from the same file, or U-Boot's bootcount.env (hex, none is 0).
const viewCmd = `( . /usr/sbin/balena-config-vars; . /usr/bin/rollback-parse-bootloader >/dev/null;
bc=$(grep -a '^bootcount=' "$BOOTLOADER_FILE" | cut -d= -f2);
if [ -f /mnt/boot/bootcount.env ]; then bc=$(tr -d '\0' < /mnt/boot/bootcount.env | grep '^bootcount=' | cut -d= -f2); bc=$((0x$bc)); fi;
echo "VIEW root=$resin_root_part upgrade=$upgrade_available bootcount=$(echo ${bc:-0})" ) || echo "VIEW failed"`

var viewLine = regexp.MustCompile(`(?m)^VIEW (.*)$`)

// parseViews returns the n VIEW lines of a harness run as environments; a view balena could not read
// fails the test.
func parseViews(t *testing.T, out string, n int) []bootenv.Env {
	t.Helper()
	ms := viewLine.FindAllStringSubmatch(out, -1)
	if len(ms) != n {
		t.Fatalf("%d VIEW lines, want %d:\n%s", len(ms), n, out)
	}
	var envs []bootenv.Env
	for _, m := range ms {
		if m[1] == "failed" {
			t.Fatalf("balena's rollback-parse-bootloader failed:\n%s", out)
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(m[1]) {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
		var e bootenv.Env
		switch r := kv["root"]; r {
		case "A", "B":
			e.Root = bootenv.Slot(r)
		default:
			n, err := strconv.ParseInt(r, 16, 32)
			if err != nil || (n != 2 && n != 3) {
				t.Fatalf("balena reads resin_root_part=%q:\n%s", r, out)
			}
			e.Root = map[int64]bootenv.Slot{2: bootenv.SlotA, 3: bootenv.SlotB}[n]
		}
		switch kv["upgrade"] {
		case "0":
		case "1":
			e.UpgradeAvailable = true
		default:
			t.Fatalf("balena reads upgrade_available=%q:\n%s", kv["upgrade"], out)
		}
		bc, err := strconv.Atoi(kv["bootcount"])
		if err != nil {
			t.Fatalf("balena reads bootcount=%q:\n%s", kv["bootcount"], out)
		}
		e.BootCount = bc
		envs = append(envs, e)
	}
	return envs
}

// balenaFixture is a version 1 image and bundles of versions 2 and 3 for one device type (versions past
// balena's rollback minimum, 2.30.0), with each version's /resin-boot (the boot files balena's hooks
// install from the running OS).
type balenaFixture struct {
	img       string
	bundle    map[int]string
	resinBoot map[int]string
	kernel    map[int]string
}

func balenaVersion(v int) string { return fmt.Sprintf("2.11%d.0", v) }

func newBalenaFixture(t *testing.T, deviceType string) balenaFixture {
	t.Helper()
	dir := t.TempDir()
	deploy := filepath.Join(dir, "deploy")
	must(t, os.MkdirAll(deploy, 0o755))
	f := balenaFixture{img: filepath.Join(dir, "v1.img"), bundle: map[int]string{}, resinBoot: map[int]string{}, kernel: map[int]string{}}
	for v := 1; v <= 3; v++ {
		f.kernel[v] = strings.Repeat(fmt.Sprintf("kernel %d ", v), 1000*v)
		must(t, os.WriteFile(filepath.Join(deploy, fmt.Sprintf("kernel-%d", v)), []byte(f.kernel[v]), 0o644))
	}
	env := []string{"SOURCE_DATE_EPOCH=1700000000"}
	spec := fmt.Sprintf(`device_type = %q
[sizes]
boot = 40
root = 48
state = 8
data = 16
[rootfs]
source = %q
[boot]
deploy_dir = "deploy"
files = ["kernel-1:/kernel"]
`, deviceType, rootTree(t, dir, balenaVersion(1)))
	must(t, os.WriteFile(filepath.Join(dir, "spec.toml"), []byte(spec), 0o644))
	mustHostos(t, env, nil, "build", "-q", "--spec", filepath.Join(dir, "spec.toml"), "-o", f.img)
	for v := 2; v <= 3; v++ {
		f.bundle[v] = filepath.Join(dir, fmt.Sprintf("v%d.hostos", v))
		files := []string{"--boot-files", fmt.Sprintf("kernel-%d:/kernel", v)}
		if v == 2 {
			files = append(files, "--boot-files", "kernel-2:/overlays/new.dtbo")
		}
		mustHostos(t, env, nil, append([]string{"bundle", "create", "-q", "--rootfs", rootTree(t, dir, balenaVersion(v)), "--device-type", deviceType,
			"--version", balenaVersion(v), "--root-size", "32", "--deploy-dir", deploy, "-o", f.bundle[v]}, files...)...)
	}
	// /resin-boot of each version: its boot files, and for legacy GRUB the boot code balena's 99-resin-grub
	// compares with the disk's (here the image's own first sectors, so that it writes nothing there).
	mbr, err := os.ReadFile(f.img)
	must(t, err)
	for v := 1; v <= 2; v++ {
		rb := filepath.Join(dir, fmt.Sprintf("resin-boot-%d", v))
		must(t, os.MkdirAll(filepath.Join(rb, "grub"), 0o755))
		must(t, os.WriteFile(filepath.Join(rb, "kernel"), []byte(f.kernel[v]), 0o644))
		if v == 2 {
			must(t, os.MkdirAll(filepath.Join(rb, "overlays"), 0o755))
			must(t, os.WriteFile(filepath.Join(rb, "overlays/new.dtbo"), []byte(f.kernel[v]), 0o644))
		}
		if deviceType == "genericx86-64-ext" {
			must(t, os.WriteFile(filepath.Join(rb, "grub/boot.img"), mbr[:446], 0o644))
			must(t, os.WriteFile(filepath.Join(rb, "grub/core.img"), mbr[512:1024], 0o644))
		} else {
			must(t, os.Remove(filepath.Join(rb, "grub")))
		}
		f.resinBoot[v] = rb
	}
	return f
}

// balenaDevice runs the harness for one device type.
type balenaDevice struct {
	t        *testing.T
	h, upper string
	dev      string
	efi      bool
	fx       balenaFixture
}

// updated is a copy of the version 1 image that hostos updated to version 2 (running slot A).
func (d balenaDevice) updated() string {
	t := d.t
	img := filepath.Join(t.TempDir(), "disk.img")
	run(t, "cp", "--sparse=always", d.fx.img, img)
	mustHostos(t, nil, nil, "update", "-q", d.fx.bundle[2], "--image", img)
	d.kernel(img, 2)
	return img
}

// boot runs cmd in the harness's chroot as slot booted of img, with balena's scripts installed.
func (d balenaDevice) boot(img string, booted bootenv.Slot, env []string, cmd string) string {
	t := d.t
	t.Helper()
	c := exec.Command(filepath.Join(d.h, "boot.sh"), cmd)
	efi := "0"
	if d.efi {
		efi = "1"
	}
	c.Env = append(append(os.Environ(), "IMG="+img, "BOOTED="+string(booted), "DEV="+d.dev, "UPPER="+d.upper, "EFI="+efi,
		"TMPDIR="+t.TempDir()), env...)
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("harness boot.sh: %v\n%s", err, out)
	}
	return string(out)
}

// fallback powers the device on through the bootloader's counting until it boots slot A again, and
// returns the bootcount it leaves.
func (d balenaDevice) fallback(img, envFile string) int {
	t := d.t
	t.Helper()
	backend := status(t, img, bootenv.SlotA).Backend
	for i := 0; i < 6; i++ {
		back := false
		switch backend {
		case "grub":
			back = strings.Contains(run(t, filepath.Join(d.h, "grub-boot.sh"), img, envFile), "boots root A")
		case "u-boot":
			back = strings.Contains(run(t, filepath.Join(d.h, "uboot-boot.sh"), img), "(root A)")
		default: // the harness has no model of balena's bootloader: hostos's (package bootsim)
			back = powerOn(t, img) == bootenv.SlotA
		}
		if back {
			return status(t, img, bootenv.SlotA).Env.BootCount
		}
	}
	t.Fatalf("the bootloader never fell back to slot A")
	return 0
}

// agree wants hostos status (slot booted running) and balena's view to be want.
func (d balenaDevice) agree(img string, booted bootenv.Slot, balena, want bootenv.Env) {
	t := d.t
	t.Helper()
	st := status(t, img, booted)
	if st.Env != want || balena != want {
		t.Fatalf("hostos status %+v, balena %+v, want %+v", st.Env, balena, want)
	}
}

// kernel wants the boot partition's /kernel to be version v's, and version 2's added overlay there exactly
// when v is 2.
func (d balenaDevice) kernel(img string, v int) {
	t := d.t
	t.Helper()
	off, _ := bootRange(t, img)
	p := filepath.Join(t.TempDir(), "kernel")
	run(t, "mcopy", "-n", "-i", fmt.Sprintf("%s@@%d", img, off), "::/kernel", p)
	b, err := os.ReadFile(p)
	must(t, err)
	if string(b) != d.fx.kernel[v] {
		t.Fatalf("/kernel on the boot partition is not version %d's (%d bytes)", v, len(b))
	}
}

// crumbs wants exactly the breadcrumbs want (status lists them).
func (d balenaDevice) crumbs(img string, booted bootenv.Slot, want ...string) {
	t := d.t
	t.Helper()
	got := status(t, img, booted).Crumbs
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("breadcrumbs %q, want %q", got, want)
	}
}

func (d balenaDevice) noCrumbs(img string, booted bootenv.Slot) { d.crumbs(img, booted) }
