package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/bootenv/bootsim"
	"github.com/hostos/hostos/hostapp/update"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/bootfs"
	"github.com/hostos/hostos/tests/testtool"
)

// backends are the device types whose bootloaders the updater drives, one per backend.
var backends = []struct{ name, deviceType string }{
	{"grub", "genericx86-64-ext"},
	{"u-boot", "raspberrypi4-64"},
	{"balena-bootloader", "raspberrypi5"},
}

// updateFixture is an image at version 1.0.0 and a bundle of version 2.0.0 for the same device type.
type updateFixture struct {
	dir, img, bundle string
}

// rootTree writes a small root filesystem at version v.
func rootTree(t *testing.T, dir, v string) string {
	t.Helper()
	root := filepath.Join(dir, "root-"+v)
	for _, d := range []string{"etc", "usr/lib", "usr/bin", "var"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(root, "usr/lib/os-release"),
		[]byte(fmt.Sprintf("NAME=\"balenaOS\"\nVERSION_ID=\"%s\"\nVERSION=\"%s\"\n", v, v)), 0o644))
	must(t, os.Symlink("../usr/lib/os-release", filepath.Join(root, "etc/os-release")))
	must(t, os.WriteFile(filepath.Join(root, "usr/bin/payload"), []byte(strings.Repeat("v"+v, 300000)), 0o755))
	return root
}

func newUpdateFixture(t *testing.T, deviceType string) updateFixture {
	t.Helper()
	dir := t.TempDir()
	deploy := filepath.Join(dir, "deploy")
	must(t, os.MkdirAll(deploy, 0o755))
	must(t, os.WriteFile(filepath.Join(deploy, "kernel-1"), []byte(strings.Repeat("kernel one ", 1000)), 0o644))
	must(t, os.WriteFile(filepath.Join(deploy, "kernel-2"), []byte(strings.Repeat("kernel two ", 2000)), 0o644))
	spec := fmt.Sprintf(`device_type = %q
[sizes]
boot = 40
root = 48
state = 8
data = 32
[rootfs]
source = %q
[boot]
deploy_dir = "deploy"
files = ["kernel-1:/kernel"]
`, deviceType, rootTree(t, dir, "1.0.0"))
	must(t, os.WriteFile(filepath.Join(dir, "spec.toml"), []byte(spec), 0o644))
	f := updateFixture{dir: dir, img: filepath.Join(dir, "disk.img"), bundle: filepath.Join(dir, "v2.hostos")}
	env := []string{"SOURCE_DATE_EPOCH=1700000000"}
	mustHostos(t, env, nil, "build", "-q", "--spec", filepath.Join(dir, "spec.toml"), "-o", f.img)
	mustHostos(t, env, nil, "bundle", "create", "-q", "--rootfs", rootTree(t, dir, "2.0.0"), "--device-type", deviceType,
		"--version", "2.0.0", "--root-size", "32", "--deploy-dir", deploy, "--boot-files", "kernel-2:/kernel", "-o", f.bundle)
	return f
}

// status runs hostos status --json on the image as if slot booted were running.
func status(t *testing.T, img string, booted bootenv.Slot) update.Status {
	t.Helper()
	var s update.Status
	out := mustHostos(t, nil, nil, "status", "--json", "--image", img, "--booted", string(booted))
	must(t, json.Unmarshal([]byte(out), &s))
	return s
}

// powerOn evaluates the bootloader's script on the image, as a power-on would, and returns the slot it boots.
func powerOn(t *testing.T, img string) bootenv.Slot {
	t.Helper()
	d, err := disk.Open(img, true)
	must(t, err)
	defer d.Close()
	tg, err := update.OpenImage(d, "")
	must(t, err)
	slot, err := bootsim.Boot(tg.Env, tg.Boot)
	must(t, err)
	must(t, d.Sync())
	return slot
}

// checkEnvFiles has the real tools read the bootloader files: grub-editenv for grubenv blocks, plain
// parsing for U-Boot's text files.
func checkEnvFiles(t *testing.T, img, backend string, want bootenv.Env) {
	t.Helper()
	off, _ := bootRange(t, img)
	get := func(name string) string {
		p := filepath.Join(t.TempDir(), filepath.Base(name))
		run(t, "mcopy", "-n", "-i", fmt.Sprintf("%s@@%d", img, off), "::"+name, p)
		return p
	}
	upgrade := map[bool]string{true: "1", false: "0"}[want.UpgradeAvailable]
	switch backend {
	case "grub":
		// One grubenv, the legacy layout's, as balenaOS's 99-resin-grub leaves it: its rollback scripts stop
		// when they find two.
		if err := exec.Command("mcopy", "-n", "-i", fmt.Sprintf("%s@@%d", img, off), "::/EFI/BOOT/grubenv", filepath.Join(t.TempDir(), "x")).Run(); err == nil {
			t.Errorf("/EFI/BOOT/grubenv is still there beside /grub/grubenv")
		}
		for _, name := range []string{"/grub/grubenv"} {
			out := run(t, testtool.Need(t, "grub-editenv"), get(name), "list")
			part := map[bootenv.Slot]string{bootenv.SlotA: "2", bootenv.SlotB: "3"}[want.Root]
			for _, kv := range []string{"resin_root_part=" + part, "upgrade_available=" + upgrade} {
				if !strings.Contains(out, kv+"\n") {
					t.Errorf("grub-editenv %s list lacks %s:\n%s", name, kv, out)
				}
			}
		}
	case "u-boot":
		b, err := os.ReadFile(get("/resinOS_uEnv.txt"))
		must(t, err)
		v, err := bootenv.DecodeUEnv(b)
		must(t, err)
		part := map[bootenv.Slot]string{bootenv.SlotA: "2", bootenv.SlotB: "3"}[want.Root]
		if v["resin_root_part"] != part || v["upgrade_available"] != upgrade {
			t.Errorf("resinOS_uEnv.txt: %q", b)
		}
	case "balena-bootloader":
		out := run(t, testtool.Need(t, "grub-editenv"), get("/bootenv"), "list")
		if !strings.Contains(out, "resin_root_part="+string(want.Root)+"\n") {
			t.Errorf("bootenv:\n%s", out)
		}
	}
}

// writeDataFile puts a file in resin-data, as an application would, to prove updates keep it.
func writeDataFile(t *testing.T, img string) (off int64) {
	t.Helper()
	r := inspectJSON(t, img)
	for _, p := range r.Partitions {
		if p.Label == "resin-data" {
			src := filepath.Join(t.TempDir(), "app.db")
			must(t, os.WriteFile(src, []byte("application data"), 0o644))
			cmd := exec.Command("debugfs", "-w", "-R", "write "+src+" app.db", fmt.Sprintf("%s?offset=%d", img, p.Start))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("debugfs: %v\n%s", err, out)
			}
			return p.Start
		}
	}
	t.Fatal("no resin-data")
	return 0
}

func dataFile(t *testing.T, img string, off int64) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat app.db", fmt.Sprintf("%s?offset=%d", img, off)).Output()
	must(t, err)
	return string(out)
}

func checksFile(t *testing.T, pass bool) string {
	t.Helper()
	cmd := `["/bin/true"]`
	if !pass {
		cmd = `["/bin/sh", "-c", "echo engine unhealthy >&2; exit 1"]`
	}
	p := filepath.Join(t.TempDir(), "health.toml")
	must(t, os.WriteFile(p, []byte("[[check]]\nname = \"engine\"\ncommand = "+cmd+"\ninterval = \"10ms\"\ntimeout = \"5s\"\n"), 0o644))
	return p
}

// TestUpdateScenarios: for each bootloader, the three outcomes of balena's host-update suite, judged
// through the bootloader model, hostos status, the real env tools and the data partition.
func TestUpdateScenarios(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			fx := newUpdateFixture(t, b.deviceType)
			pristine := filepath.Join(fx.dir, "pristine.img")
			must(t, exec.Command("cp", "--sparse=always", fx.img, pristine).Run())
			fresh := func(t *testing.T) string {
				img := filepath.Join(t.TempDir(), "disk.img")
				must(t, exec.Command("cp", "--sparse=always", pristine, img).Run())
				return img
			}
			install := func(t *testing.T, img string) {
				out := mustHostos(t, nil, nil, "update", "-q", "--image", img, fx.bundle)
				if !strings.Contains(out, "slot B") {
					t.Errorf("update said %q", out)
				}
				s := status(t, img, bootenv.SlotA)
				if !s.Pending || s.Env.Root != bootenv.SlotB || s.Versions[bootenv.SlotB] != "2.0.0" || s.Versions[bootenv.SlotA] != "1.0.0" {
					t.Fatalf("after update: %+v", s)
				}
				// As balenaOS's hostapp-update leaves them: the two breadcrumbs and rollback-health-variables.
				if strings.Join(s.Crumbs, " ") != strings.Join([]string{update.HealthBreadcrumb, update.AltbootBreadcrumb, update.HealthVariables}, " ") {
					t.Errorf("breadcrumbs after update: %v", s.Crumbs)
				}
				checkEnvFiles(t, img, b.name, bootenv.Env{Root: bootenv.SlotB, UpgradeAvailable: true})
				off, size := bootRange(t, img)
				fsckVfat(t, img, off, size)
				if k := runKernel(t, img); k != strings.Repeat("kernel two ", 2000) {
					t.Errorf("boot files not updated: kernel %.20q", k)
				}
				if fp := inspectJSON(t, img).Fingerprint; !fp.Verified {
					t.Errorf("balenaos.fingerprint not refreshed: %+v", fp)
				}
			}

			t.Run("healthy", func(t *testing.T) {
				img := fresh(t)
				data := writeDataFile(t, img)
				// fsck.vfat's leftovers fill boot partitions in the field: the update clears them.
				off, _ := bootRange(t, img)
				rec := filepath.Join(t.TempDir(), "FSCK0000.REC")
				must(t, os.WriteFile(rec, randomBytes(1<<20), 0o644))
				run(t, "mcopy", "-i", fmt.Sprintf("%s@@%d", img, off), rec, "::/FSCK0000.REC")
				install(t, img)
				if out := run(t, "mdir", "-b", "-i", fmt.Sprintf("%s@@%d", img, off), "::/"); strings.Contains(out, "FSCK") {
					t.Errorf("FSCK0000.REC still on the boot partition:\n%s", out)
				}
				if slot := powerOn(t, img); slot != bootenv.SlotB {
					t.Fatalf("booted %s, want B", slot)
				}
				// The new system came up: rollback-altboot clears the count, so clean reboots before the
				// health checks end never add up to a fallback.
				for i := 0; i < 4; i++ {
					if out := mustHostos(t, nil, nil, "rollback-altboot", "--image", img, "--booted", "B"); !strings.Contains(out, "boot count cleared") {
						t.Fatalf("rollback-altboot in the new slot: %q", out)
					}
					if slot := powerOn(t, img); slot != bootenv.SlotB {
						t.Fatalf("clean reboot %d before commit booted %s", i, slot)
					}
				}
				out := mustHostos(t, nil, nil, "health", "--image", img, "--booted", "B", "--checks", checksFile(t, true))
				if !strings.Contains(out, "committed") {
					t.Errorf("health: %q", out)
				}
				s := status(t, img, bootenv.SlotB)
				if s.Pending || s.Env.Root != bootenv.SlotB || len(s.Crumbs) != 0 {
					t.Errorf("after commit: %+v", s)
				}
				checkEnvFiles(t, img, b.name, bootenv.Env{Root: bootenv.SlotB})
				for i := 0; i < 4; i++ { // clean reboots after the commit stay on B
					if slot := powerOn(t, img); slot != bootenv.SlotB {
						t.Fatalf("reboot %d after commit booted %s", i, slot)
					}
				}
				if got := dataFile(t, img, data); got != "application data" {
					t.Errorf("data partition file: %q", got)
				}
				// Manual control: back to the previous OS, which boots from then on.
				if out := mustHostos(t, nil, nil, "rollback", "--image", img, "--booted", "B"); !strings.Contains(out, "slot A") {
					t.Errorf("rollback: %q", out)
				}
				if slot := powerOn(t, img); slot != bootenv.SlotA {
					t.Errorf("after rollback booted %s", slot)
				}
				if r := hostos(t, nil, nil, "commit", "--image", img, "--booted", "A"); r.code == 0 || !strings.Contains(r.stderr, "no update is pending") {
					t.Errorf("commit with nothing pending: exit %d %q", r.code, r.stderr)
				}
			})

			t.Run("unhealthy", func(t *testing.T) {
				img := fresh(t)
				install(t, img)
				if slot := powerOn(t, img); slot != bootenv.SlotB {
					t.Fatalf("booted %s, want B", slot)
				}
				out := mustHostos(t, nil, nil, "health", "--image", img, "--booted", "B", "--checks", checksFile(t, false))
				if !strings.Contains(out, "back to slot A") || !strings.Contains(out, "reboot") {
					t.Errorf("health: %q", out)
				}
				s := status(t, img, bootenv.SlotB)
				if s.Pending || s.Env.Root != bootenv.SlotA || strings.Join(s.Crumbs, " ") != update.HealthTriggered {
					t.Errorf("after failed health: %+v", s)
				}
				if slot := powerOn(t, img); slot != bootenv.SlotA {
					t.Errorf("after rollback booted %s", slot)
				}
				checkEnvFiles(t, img, b.name, bootenv.Env{Root: bootenv.SlotA})
			})

			t.Run("never-up", func(t *testing.T) {
				img := fresh(t)
				install(t, img)
				var boots []bootenv.Slot
				for i := 0; i < 6; i++ { // the new system hangs before health: power cycles until the fallback
					slot := powerOn(t, img)
					boots = append(boots, slot)
					if slot == bootenv.SlotA {
						break
					}
				}
				if boots[0] != bootenv.SlotB || boots[len(boots)-1] != bootenv.SlotA {
					t.Fatalf("boots %v: want B first, then the fallback to A", boots)
				}
				// health in the old slot does nothing; rollback-altboot makes the fallback final.
				out := mustHostos(t, nil, nil, "health", "--image", img, "--booted", "A", "--checks", checksFile(t, true))
				if !strings.Contains(out, "nothing") {
					t.Errorf("health in the fallback slot: %q", out)
				}
				out = mustHostos(t, nil, nil, "rollback-altboot", "--image", img, "--booted", "A")
				if !strings.Contains(out, "never came up") {
					t.Errorf("rollback-altboot: %q", out)
				}
				s := status(t, img, bootenv.SlotA)
				if s.Pending || s.Env.Root != bootenv.SlotA || strings.Join(s.Crumbs, " ") != update.AltbootTriggered {
					t.Errorf("after rollback-altboot: %+v", s)
				}
				for i := 0; i < 3; i++ {
					if slot := powerOn(t, img); slot != bootenv.SlotA {
						t.Fatalf("boot %d after rollback-altboot: %s", i, slot)
					}
				}
				if out := mustHostos(t, nil, nil, "rollback-altboot", "--image", img, "--booted", "A"); !strings.Contains(out, "nothing") {
					t.Errorf("second rollback-altboot: %q", out)
				}
			})
		})
	}
}

// runKernel reads /kernel from the boot partition.
func runKernel(t *testing.T, img string) string {
	t.Helper()
	d, err := disk.Open(img, false)
	must(t, err)
	defer d.Close()
	p, err := bootfs.Locate(d, nil)
	must(t, err)
	fs, err := bootfs.OpenFAT(d, p)
	must(t, err)
	b, err := fs.ReadFile("/kernel")
	must(t, err)
	return string(b)
}

// TestUpdateBadBundles: every bad source is refused with one line naming the problem, and the bootloader
// still points at the running slot with nothing pending.
func TestUpdateBadBundles(t *testing.T) {
	fx := newUpdateFixture(t, "genericx86-64-ext")
	good, err := os.ReadFile(fx.bundle)
	must(t, err)
	write := func(name string, b []byte) string {
		p := filepath.Join(fx.dir, name)
		must(t, os.WriteFile(p, b, 0o644))
		return p
	}
	truncated := write("truncated.hostos", good[:len(good)/2])
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-3000] ^= 0xff // inside the compressed payload or boot files
	corrupted := write("corrupt.hostos", corrupt)
	other := filepath.Join(fx.dir, "pi.hostos")
	mustHostos(t, nil, nil, "bundle", "create", "-q", "--rootfs", rootTree(t, fx.dir, "3.0.0"), "--device-type", "raspberrypi4-64",
		"--version", "3.0.0", "--root-size", "32", "-o", other)
	keyDir := t.TempDir()
	mustHostos(t, nil, nil, "bundle", "keygen", "-o", filepath.Join(keyDir, "release"))
	wrongKeyDir := t.TempDir()
	mustHostos(t, nil, nil, "bundle", "keygen", "-o", filepath.Join(wrongKeyDir, "other"))
	signed := filepath.Join(fx.dir, "signed.hostos")
	mustHostos(t, nil, nil, "bundle", "create", "-q", "--rootfs", rootTree(t, fx.dir, "4.0.0"), "--device-type", "genericx86-64-ext",
		"--version", "4.0.0", "--root-size", "32", "--sign", filepath.Join(wrongKeyDir, "other"), "-o", signed)
	evil := filepath.Join(fx.dir, "evil.tar")
	run(t, "sh", "-c", fmt.Sprintf("cd %s && mkdir -p x/etc && echo pwned > x/etc/passwd && tar -cf %s --transform 's,^x/etc,../../etc,' x/etc/passwd", fx.dir, evil))
	big := filepath.Join(fx.dir, "big")
	must(t, os.MkdirAll(big, 0o755))
	blob, err := os.Create(filepath.Join(big, "blob"))
	must(t, err)
	must(t, blob.Truncate(0))
	_, err = blob.Write(randomBytes(60 << 20))
	must(t, err)
	blob.Close()
	cases := []struct {
		name, src string
		args      []string
		want      string
	}{
		{"truncated", truncated, nil, "truncated"},
		{"corrupted payload", corrupted, nil, "corrupt"},
		{"wrong device type", other, nil, "raspberrypi4-64"},
		{"unsigned with keys required", fx.bundle, []string{"--keys-dir", keyDir}, "not signed"},
		{"signed with another key", signed, []string{"--keys-dir", keyDir}, "signature"},
		{"tar escaping the root", evil, nil, ".."},
		{"does not fit the slot", big, nil, "fit"},
		{"missing source", filepath.Join(fx.dir, "nope.hostos"), nil, "nope.hostos"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := status(t, fx.img, bootenv.SlotA)
			r := hostos(t, nil, nil, append([]string{"update", "-q", "--image", fx.img, c.src}, c.args...)...)
			msg := strings.TrimSpace(r.stderr)
			if r.code == 0 || strings.Contains(msg, "\n") || !strings.Contains(strings.ToLower(msg), strings.ToLower(c.want)) {
				t.Errorf("exit %d, stderr %q (want it to mention %q)", r.code, msg, c.want)
			}
			s := status(t, fx.img, bootenv.SlotA)
			if s.Pending || s.Env.Root != bootenv.SlotA || len(s.Crumbs) != 0 || s.Versions[bootenv.SlotA] != "1.0.0" {
				t.Errorf("after a refused update: %+v (before %+v)", s, before)
			}
			if slot := powerOn(t, fx.img); slot != bootenv.SlotA {
				t.Errorf("boots %s after a refused update", slot)
			}
		})
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	x := uint64(88172645463325252)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}
