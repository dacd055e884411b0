package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/tests/testtool"
)

// smallImage builds a small image of deviceType from the embedded default root filesystem, as OS
// version 2.113.4 (balena-device-init configures the network only for images it reads as OS 1 or 2,
// or whose manifest it cannot read a version for).
func smallImage(t *testing.T, deviceType, extra string) string {
	t.Helper()
	dir := t.TempDir()
	spec := filepath.Join(dir, "spec.toml")
	must(t, os.WriteFile(spec, []byte(fmt.Sprintf("device_type = %q\nversion = \"2.113.4\"\n%s\n[sizes]\nroot = 64\nstate = 4\ndata = 4\n", deviceType, extra)), 0o644))
	img := filepath.Join(dir, "small.img")
	mustHostos(t, []string{"SOURCE_DATE_EPOCH=1600000000"}, nil, "build", "-q", "--spec", spec, "-o", img)
	return img
}

// genericImage is one small genericx86-64-ext image built once for the tests that only configure or
// read an image; each gets its own sparse copy.
var genericImage struct {
	once sync.Once
	path string
	err  string
}

func genericImageCopy(t *testing.T) string {
	t.Helper()
	genericImage.once.Do(func() {
		// Beside the binary: TestMain removes that directory when the tests end.
		dir := filepath.Dir(hostosBin)
		spec := filepath.Join(dir, "spec.toml")
		if err := os.WriteFile(spec, []byte("device_type = \"genericx86-64-ext\"\nversion = \"2.113.4\"\n[sizes]\nroot = 64\nstate = 4\ndata = 4\n"), 0o644); err != nil {
			genericImage.err = err.Error()
			return
		}
		genericImage.path = filepath.Join(dir, "generic.img")
		if r := hostos(t, []string{"SOURCE_DATE_EPOCH=1600000000"}, nil, "build", "-q", "--spec", spec, "-o", genericImage.path); r.code != 0 {
			genericImage.err = r.stderr
		}
	})
	if genericImage.err != "" {
		t.Fatalf("building the shared image: %s", genericImage.err)
	}
	img := filepath.Join(t.TempDir(), "generic.img")
	run(t, "cp", "--sparse=always", genericImage.path, img)
	return img
}

// mdirNames lists a directory of the FAT at byte offset off of img with mtools, names lower-cased.
func mdirNames(t *testing.T, img string, off int64, dir string) []string {
	t.Helper()
	out := run(t, testtool.Need(t, "mdir"), "-b", "-i", fmt.Sprintf("%s@@%d", img, off), "::"+dir)
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			names = append(names, strings.TrimSuffix(strings.ToLower(strings.TrimPrefix(l, "::"+dir+"/")), "/"))
		}
	}
	slices.Sort(names)
	return names
}

// TestBuildBootLayoutEveryDeviceType: for every device type of the registry, hostos build lays out the
// boot partition as balenaOS does (flag file, image-version-info, samples in system-connections/ and
// system-proxy/, extra_uEnv.txt on U-Boot boards), balena-device-init's configure with a Wi-Fi network
// succeeds on it and writes resin-wifi, hostos reads the config.json balena wrote and configures on top
// of it, fsck.vfat -n is clean before and after, and the fingerprint still verifies.
func TestBuildBootLayoutEveryDeviceType(t *testing.T) {
	oracle(t)
	testtool.Need(t, "fsck.vfat")
	for _, dt := range config.DeviceTypes() {
		t.Run(dt.Slug, func(t *testing.T) {
			t.Parallel() // each on its own image; mostly waiting on node, mtools and fsck.vfat
			img := smallImage(t, dt.Slug, "")
			off, size := bootRange(t, img)

			root := mdirNames(t, img, off, "")
			want := []string{"balena-image", "image-version-info", "system-connections", "system-proxy", "config.json", "device-type.json", "os-release", "balenaos.fingerprint"}
			if dt.Bootloader == config.BootloaderUBoot || dt.Bootloader == config.BootloaderRPi {
				want = append(want, "extra_uenv.txt")
			}
			for _, w := range want {
				if !contains(root, w) {
					t.Errorf("boot partition / = %v, lacks %s", root, w)
				}
			}
			if got := mdirNames(t, img, off, "/system-connections"); strings.Join(got, " ") != "balena-sample.ignore readme.ignore" {
				t.Errorf("system-connections/ = %v", got)
			}
			if got := mdirNames(t, img, off, "/system-proxy"); strings.Join(got, " ") != "readme.ignore redsocks.conf.ignore" {
				t.Errorf("system-proxy/ = %v", got)
			}
			if got := runOracle(t, "read-file", img, "1", "/image-version-info"); got != "balena-image-"+dt.Slug+"-2.113.4\n\n" {
				t.Errorf("image-version-info %q", got)
			}

			fsckVfat(t, img, off, size)

			cfg := filepath.Join(t.TempDir(), "config.json")
			must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{"deviceType":%q,"applicationId":42,"hostname":"from-balena","persistentLogging":true}`, dt.Slug)), 0o644))
			runOracle(t, "configure", img, cfg, "Balena Net", "balena-pass-123")
			k, err := config.ParseKeyfile([]byte(runOracle(t, "read-file", img, "1", "/system-connections/resin-wifi")))
			must(t, err)
			if ssid, _ := k.Get("wifi", "ssid"); ssid != "Balena Net" {
				t.Errorf("resin-wifi ssid %q", ssid)
			}
			if psk, _ := k.Get("wifi-security", "psk"); psk != "balena-pass-123" {
				t.Errorf("resin-wifi psk %q", psk)
			}
			// balena-image-fs writes the first FAT only ("FATs differ"), as on balena's own images; hostos
			// configures on top of its work and leaves a clean file system.
			mustHostos(t, nil, nil, "configure", img, "--country", "de")
			fsckVfat(t, img, off, size)

			var got map[string]any
			must(t, json.Unmarshal([]byte(mustHostos(t, nil, nil, "config", "read", "--json", img)), &got))
			if got["hostname"] != "from-balena" || got["country"] != "DE" || got["deviceType"] != dt.Slug || got["applicationId"] != 42.0 {
				t.Errorf("config read after balena's configure: %v", got)
			}
			if r := inspectJSON(t, img); !r.Fingerprint.Verified {
				t.Errorf("fingerprint after balena's configure: %+v", r.Fingerprint)
			}
		})
	}
}

// TestBuildRefusesGeneratedBootFiles: a boot file list entry onto a file build writes itself
// (config.json, os-release, device-type.json, the bootloader environment, the fingerprint), in any
// letter case since FAT ignores it, is refused with a message naming it instead of being dropped
// silently, and no image appears.
func TestBuildRefusesGeneratedBootFiles(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "kernel"), []byte("kernel"), 0o644))
	for i, dst := range []string{"/config.json", "/CONFIG.JSON", "/os-release", "/OS-Release", "/EFI/BOOT/grubenv", "/Device-Type.json", "/balenaos.fingerprint"} {
		spec := filepath.Join(dir, fmt.Sprintf("s%d.toml", i))
		must(t, os.WriteFile(spec, []byte(fmt.Sprintf("version = \"2.0.0\"\n[sizes]\nroot = 64\nstate = 4\ndata = 4\n[boot]\nfiles = [\"kernel:%s\"]\n", dst)), 0o644))
		out := filepath.Join(dir, fmt.Sprintf("s%d.img", i))
		r := hostos(t, nil, nil, "build", "-q", "--spec", spec, "-o", out)
		if r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(dst)+" ") || fileExists(out) {
			t.Errorf("boot file onto %s: exit %d, %q", dst, r.code, r.stderr)
		}
	}
}
