package update

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/bootfs"
	"github.com/hostos/hostos/tests/testtool"
)

// TestCheckBootName: the boot files an update must never write are matched as the FAT matches names.
func TestCheckBootName(t *testing.T) {
	grub := bootenv.Grub(bootenv.Parts{A: 2, B: 3})
	uboot := bootenv.UBoot(bootenv.Parts{A: 2, B: 3})
	deep := strings.Repeat("d/", 70) + "f"
	for _, tc := range []struct {
		name    string
		env     bootenv.Backend
		refused bool
	}{
		{"config.json", grub, true},
		{"/CONFIG.JSON", grub, true},
		{"./config.json", grub, true},
		{"//Config.Json", grub, true},
		{"config.json.", grub, true},
		{"config.json ", grub, true},
		{"BALENAOS.FINGERPRINT", grub, true},
		{"Extra_uEnv.txt", uboot, true},
		{"System-Connections/resin-wifi", grub, true},
		{"system-proxy/redsocks.conf", grub, true},
		{"SPLASH/balena-logo.png", grub, true},
		{"splash./balena-logo.png", grub, true},
		{"\u017fplash/balena-logo.png", grub, true}, // LATIN SMALL LETTER LONG S folds to s
		{"SYSTEM~1/resin-wifi", grub, true},         // the 8.3 alias of system-connections
		{"grub/GRUBENV", grub, true},
		{"efi//boot/grubenv", grub, true},
		{"resinOS_uEnv.txt", uboot, true},
		{"BOOTCOUNT.ENV", uboot, true},
		{deep, grub, true},
		{"kernel", grub, false},
		{"config.json.sig", grub, false},
		{"splashscreen.bmp", grub, false},
		{"overlays/vc4-kms-v3d.dtbo", grub, false},
		{"grub/grub.cfg", grub, false},
		{"resinOS_uEnv.txt", grub, false}, // not this backend's
		{"EFI/BOOT/BOOTX64.EFI", grub, false},
	} {
		err := checkBootName(tc.name, tc.env)
		if (err != nil) != tc.refused {
			t.Errorf("%s with %s: %v, want refused %v", tc.name, tc.env.Name(), err, tc.refused)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q: want one line", tc.name, err)
		}
	}
}

// hostileBundle makes a bundle of a version 2 root filesystem whose boot files are kernel and name.
func hostileBundle(t *testing.T, deviceType, name string) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "root.ext4")
	if out, err := exec.Command(testtool.Need(t, "mkfs.ext4"), "-q", "-F", "-d", writeTree(t, dir, "2.0.0"), img, "24M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	boot := filepath.Join(dir, "boot")
	for n, body := range map[string]string{"kernel": strings.Repeat("two ", 9000), name: `{"apiKey":"ATTACKER"}`} {
		p := filepath.Join(boot, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dt, err := config.LookupDeviceType(deviceType)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hostile.hostos")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := bundle.Create(context.Background(), bundle.CreateOptions{DeviceType: dt.Slug, Arch: dt.Arch, Version: "2.0.0",
		Created: 1700000000, Image: img, BootDir: boot, TempDir: dir}, f); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUpdateRefusesDeviceOwnedBootFiles is defect 6 of issue 13: a bundle carrying /CONFIG.JSON or
// System-Connections/x used to replace the device's config.json and keyfiles on the case-insensitive FAT.
// The update must fail naming the path before the boot partition is touched: its bytes (config.json,
// env, boot files) and the running slot stay as they were, and nothing is switched.
func TestUpdateRefusesDeviceOwnedBootFiles(t *testing.T) {
	pristine, _ := crashFixture(t, "genericx86-64-ext")
	d, err := disk.Open(pristine, false)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := partition.Read(d, d.Size(), d.SectorSize())
	if err != nil {
		t.Fatal(err)
	}
	boot, err := bootfs.Locate(d, pt)
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	rootA, _ := pt.Partition(2)
	for _, name := range []string{"CONFIG.JSON", "System-Connections/resin-wifi", "SYSTEM~1/resin-wifi", "splash./balena-logo.png"} {
		t.Run(strings.NewReplacer("/", "_", "~", "_").Replace(name), func(t *testing.T) {
			b := hostileBundle(t, "genericx86-64-ext", name)
			img := filepath.Join(t.TempDir(), "disk.img")
			if err := disk.SparseCopy(img, pristine); err != nil {
				t.Fatal(err)
			}
			bootBefore, rootBefore := partitionHash(t, img, boot), partitionHash(t, img, rootA)
			_, err := runUpdate(t, img, b, -1)
			if err == nil {
				t.Fatal("the update installed a bundle that replaces a device-owned boot file")
			}
			if msg := err.Error(); !strings.Contains(msg, name) || strings.Count(msg, name) > 1 || strings.Contains(msg, "\n") ||
				!strings.Contains(msg, "belongs to the device") && !strings.Contains(msg, "8.3 alias") {
				t.Errorf("error %q: want one line naming %s once and why", msg, name)
			}
			if partitionHash(t, img, boot) != bootBefore {
				t.Error("the refused update changed the boot partition")
			}
			if partitionHash(t, img, rootA) != rootBefore {
				t.Error("the refused update changed the running slot")
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
			st, err := tg.Read()
			if err != nil {
				t.Fatal(err)
			}
			if st.Pending() || st.Env.Root != bootenv.SlotA {
				t.Errorf("after the refusal: env %+v, want slot A and nothing pending", st.Env)
			}
		})
	}
}
