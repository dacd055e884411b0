package tests

import (
	"fmt"
	"io"
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
	t.Parallel() // own images and work directories: runs beside the other long tests
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
	// The harness shows EFI firmware (/sys/firmware/efi) in its chroot's /sys only; balena's failing-health
	// path mounts a fresh sysfs for the old OS, which on an EFI board shows the firmware too. The same
	// emulation for every sysfs mounted in the chroot, or the old OS's 99-resin-grub takes the legacy path
	// and deletes /EFI, environment included, as it would on a BIOS board.
	must(t, os.WriteFile(filepath.Join(uppers["x86"], "usr/local/sbin/mount"), []byte(efiSysfsMount), 0o755))

	for _, dt := range []balenaDeviceType{
		{name: "grub-legacy", deviceType: "genericx86-64-ext", dev: "x86", envFile: "/grub/grubenv", hooks: true, hostosAltboot: true},
		{name: "grub-efi", deviceType: "generic-amd64-efi", dev: "x86", efi: true, envFile: "/EFI/BOOT/grubenv", hooks: true,
			// In the harness the old OS's 999-resin-boot-cleaner fails after 99-resin-grub switched the root
			// and put the old boot files back: on EFI it zeroes the boot code of the disk under /mnt/boot,
			// which here is a directory, not a partition. balena's rollback-health then records
			// rollback-health-failed instead of rollback-health-triggered, and its rollback-stop removes
			// that. On a device the hook finds the disk and the crumb is rollback-health-triggered.
			unhealthyCrumbs: []string{}},
		{name: "u-boot", deviceType: "raspberrypi4-64", dev: "rpi", hooks: true},
		// The oracle has no 99-balena-bootloader hook (the harness installs U-Boot's for Raspberry Pis,
		// which would write resinOS_uEnv.txt), so the orders that run balena's hooks are not started.
		{name: "balena-bootloader", deviceType: "raspberrypi5", dev: "rpi", hostosAltboot: true},
	} {
		t.Run(dt.name, func(t *testing.T) {
			// The device types run side by side (each harness run has its own loop device, work directory and
			// mount namespace): most of their time is the harness waiting on loop devices, mounts and sync.
			t.Parallel()
			d := balenaDevice{t: t, h: h, upper: uppers[dt.dev], dt: dt, fx: newBalenaFixture(t, dt.deviceType)}
			// Every order starts from the same image: version 1, updated by hostos to version 2 (running A).
			d.fx.updated = filepath.Join(t.TempDir(), "updated.img")
			run(t, "cp", "--sparse=always", d.fx.img, d.fx.updated)
			mustHostos(t, nil, nil, "update", "-q", d.fx.bundle[2], "--image", d.fx.updated)
			d.kernel(d.fx.updated, 2)
			// The breadcrumbs and the variables file balenaOS's hostapp-update leaves for its rollback services.
			d.crumbs(d.fx.updated, bootenv.SlotA, update.HealthBreadcrumb, update.AltbootBreadcrumb, update.HealthVariables)
			for _, sc := range balenaScenarios {
				if sc.hooks && !dt.hooks || sc.hostosAltboot && !dt.hostosAltboot {
					continue
				}
				t.Run(sc.name, func(t *testing.T) {
					d := d
					d.t = t
					sc.run(d, d.updated())
				})
			}
		})
	}
}

// balenaDeviceType is one device type the orders run on.
type balenaDeviceType struct {
	name, deviceType string
	dev              string // the harness's device kind (x86 or rpi)
	efi              bool
	// envFile is the grubenv balena's GRUB counts boots in (GRUB only).
	envFile string
	// hooks: the harness has the device's update hooks, so the orders that run them start.
	hooks bool
	// hostosAltboot: also the fallback made final by hostos's rollback-altboot, which balena's services
	// then read (not an order of the issue's; run where balena's altboot cannot be, and on one GRUB).
	hostosAltboot bool
	// unhealthyCrumbs are the breadcrumbs balena's failing-health path leaves, when not
	// rollback-health-triggered.
	unhealthyCrumbs []string
}

// balenaScenarios are the orders of the "Judged by", each on a fresh copy of the updated image.
var balenaScenarios = []struct {
	name          string
	hooks         bool // runs balena's update hooks
	hostosAltboot bool
	run           func(d balenaDevice, img string)
}{
	{"healthy, update again, hostos rollback", false, false, balenaDevice.healthy},
	{"unhealthy", true, false, balenaDevice.unhealthy},
	{"fallback, balena altboot", true, false, func(d balenaDevice, img string) { d.fallbackAltboot(img, "balena") }},
	{"fallback, hostos altboot", false, true, func(d balenaDevice, img string) { d.fallbackAltboot(img, "hostos") }},
}

// efiSysfsMount is mount in the chroot: the real one, and on an emulated EFI board a sysfs mounted anywhere
// shows the firmware's efi/efivars as the chroot's /sys does.
const efiSysfsMount = `#!/bin/sh
/usr/bin/mount "$@" || exit
if [ "$1 $2 $3" = "-t sysfs sysfs" ] && [ -n "$4" ] && [ -d /sys/firmware/efi/efivars ]; then
	/usr/bin/mount -t tmpfs tmpfs "$4/firmware" && mkdir -p "$4/firmware/efi/efivars"
fi
`

// healthy: hostos update -> balena's altboot and health, healthy: committed; then hostos updates again over
// what balena's rollback-stop wrote, and hostos rollback puts version 2 back, which balena's services see
// as committed.
func (d balenaDevice) healthy(img string) {
	t, b := d.t, d.fx
	d.powerOnTo(img, bootenv.SlotB) // the bootloader counts the first boot of version 2
	first := bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: 1}
	d.agree(img, bootenv.SlotB, first, first) // hostos's view; balena's is the first below
	out := d.boot(img, bootenv.SlotB, []string{"RESIN_BOOT=" + b.resinBoot[2]}, viewCmd+"; rollback-altboot; rollback-health; "+viewCmd)
	views := parseViews(t, out, 2)
	balenaReads(t, views[0], first)
	d.agree(img, bootenv.SlotB, views[1], bootenv.Env{Root: bootenv.SlotB})
	d.noCrumbs(img, bootenv.SlotB)
	d.powerOnTo(img, bootenv.SlotB)

	mustHostos(t, nil, nil, "update", "-q", b.bundle[3], "--image", img, "--booted", "B")
	out = d.boot(img, bootenv.SlotB, nil, viewCmd)
	d.agree(img, bootenv.SlotB, parseViews(t, out, 1)[0], bootenv.Env{Root: bootenv.SlotA, UpgradeAvailable: true})
	d.kernel(img, 3)
	d.crumbs(img, bootenv.SlotB, update.HealthBreadcrumb, update.AltbootBreadcrumb, update.HealthVariables)

	mustHostos(t, nil, nil, "rollback", "--image", img, "--booted", "B")
	out = d.boot(img, bootenv.SlotB, nil, viewCmd+"; rollback-altboot; rollback-health; "+viewCmd)
	vs := parseViews(t, out, 2)
	d.agree(img, bootenv.SlotB, vs[0], bootenv.Env{Root: bootenv.SlotB})
	d.agree(img, bootenv.SlotB, vs[1], bootenv.Env{Root: bootenv.SlotB})
	d.kernel(img, 2)
	d.noCrumbs(img, bootenv.SlotB)
	d.powerOnTo(img, bootenv.SlotB)
}

// unhealthy: hostos update -> balena health, unhealthy: balena runs the old OS's hooks (the hostapp layout
// emulated) and switches back; hostos sees version 1 committed with its boot files.
func (d balenaDevice) unhealthy(img string) {
	t, b := d.t, d.fx
	d.powerOnTo(img, bootenv.SlotB)
	out := d.boot(img, bootenv.SlotB, []string{"RESIN_BOOT=" + b.resinBoot[2], "OLD_RESIN_BOOT=" + b.resinBoot[1],
		"ENGINE=unhealthy", "INIT_STUB=1"}, "rollback-health; "+viewCmd)
	if !strings.Contains(out, "REBOOT requested") {
		t.Fatalf("balena's rollback-health did not reboot:\n%s", out)
	}
	d.agree(img, bootenv.SlotA, parseViews(t, out, 1)[0], bootenv.Env{Root: bootenv.SlotA})
	d.kernel(img, 1)
	if d.dt.unhealthyCrumbs != nil {
		d.crumbs(img, bootenv.SlotA, d.dt.unhealthyCrumbs...)
	} else {
		d.crumbs(img, bootenv.SlotA, update.HealthTriggered)
	}
	// The device boots version 1 from now on.
	d.powerOnTo(img, bootenv.SlotA)
}

// fallbackAltboot: hostos update -> the bootloader gives up on version 2 -> balena's rollback-altboot makes
// version 1 final; or hostos's rollback-altboot does, and balena agrees.
func (d balenaDevice) fallbackAltboot(img, who string) {
	t, b := d.t, d.fx
	counted := d.fallback(img)
	fellBack := bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true, BootCount: counted}
	var view bootenv.Env
	if who == "balena" {
		out := d.boot(img, bootenv.SlotA, []string{"RESIN_BOOT=" + b.resinBoot[1]}, viewCmd+"; rollback-altboot; "+viewCmd)
		vs := parseViews(t, out, 2)
		balenaReads(t, vs[0], fellBack)
		view = vs[1]
	} else {
		d.agree(img, bootenv.SlotA, fellBack, fellBack) // hostos's view only: balena's is checked below
		balenaReads(t, parseViews(t, d.boot(img, bootenv.SlotA, nil, viewCmd), 1)[0], fellBack)
		mustHostos(t, nil, nil, "rollback-altboot", "--image", img, "--booted", "A")
		view = parseViews(t, d.boot(img, bootenv.SlotA, nil, viewCmd), 1)[0]
	}
	d.agree(img, bootenv.SlotA, view, bootenv.Env{Root: bootenv.SlotA})
	d.kernel(img, 1)
	d.crumbs(img, bootenv.SlotA, update.AltbootTriggered)
	d.powerOnTo(img, bootenv.SlotA)
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
	updated   string // img updated by hostos to version 2
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
	mbr := make([]byte, 1024)
	img, err := os.Open(f.img)
	must(t, err)
	_, err = io.ReadFull(img, mbr)
	img.Close()
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
	dt       balenaDeviceType
	fx       balenaFixture
}

// updated is a copy of the image hostos updated to version 2 (running slot A).
func (d balenaDevice) updated() string {
	img := filepath.Join(d.t.TempDir(), "disk.img")
	run(d.t, "cp", "--sparse=always", d.fx.updated, img)
	return img
}

// boot runs cmd in the harness's chroot as slot booted of img, with balena's scripts installed.
func (d balenaDevice) boot(img string, booted bootenv.Slot, env []string, cmd string) string {
	t := d.t
	t.Helper()
	c := exec.Command(filepath.Join(d.h, "boot.sh"), cmd)
	efi := "0"
	if d.dt.efi {
		efi = "1"
	}
	// The harness names its directories in overlayfs mount options, which cannot hold the commas of a
	// subtest's TempDir.
	tmp, err := os.MkdirTemp("", "balena-harness-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(tmp) })
	c.Env = append(append(os.Environ(), "IMG="+img, "BOOTED="+string(booted), "DEV="+d.dt.dev, "UPPER="+d.upper, "EFI="+efi,
		"TMPDIR="+tmp), env...)
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("harness boot.sh: %v\n%s", err, out)
	}
	return string(out)
}

// powerOn is one power-on through the bootloader's boot counting, as the oracle's harness models GRUB's
// and U-Boot's (hostos's bootsim balena's bootloader, which the harness does not model); it returns the
// root booted.
func (d balenaDevice) powerOn(img string) bootenv.Slot {
	t := d.t
	t.Helper()
	var out string
	switch status(t, img, bootenv.SlotA).Backend {
	case "grub":
		out = run(t, filepath.Join(d.h, "grub-boot.sh"), img, d.dt.envFile)
	case "u-boot":
		out = run(t, filepath.Join(d.h, "uboot-boot.sh"), img)
	default:
		return powerOn(t, img)
	}
	switch {
	case strings.Contains(out, "boots root A"), strings.Contains(out, "(root A)"):
		return bootenv.SlotA
	case strings.Contains(out, "boots root B"), strings.Contains(out, "(root B)"):
		return bootenv.SlotB
	}
	t.Fatalf("the bootloader model booted no root:\n%s", out)
	return ""
}

// powerOnTo wants the next power-on to boot slot want.
func (d balenaDevice) powerOnTo(img string, want bootenv.Slot) {
	d.t.Helper()
	if got := d.powerOn(img); got != want {
		d.t.Fatalf("the bootloader boots %s, want %s", got, want)
	}
}

// fallback powers the device on through the bootloader's counting until it boots slot A again, and
// returns the bootcount it leaves.
func (d balenaDevice) fallback(img string) int {
	t := d.t
	t.Helper()
	for range 6 {
		if d.powerOn(img) == bootenv.SlotA {
			return status(t, img, bootenv.SlotA).Env.BootCount
		}
	}
	t.Fatalf("the bootloader never fell back to slot A")
	return 0
}

// balenaReads wants balena's view to be want.
func balenaReads(t *testing.T, view, want bootenv.Env) {
	t.Helper()
	if view != want {
		t.Fatalf("balena reads %+v, want %+v", view, want)
	}
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
