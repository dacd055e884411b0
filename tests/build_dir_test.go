package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostos/hostos/tests/testtool"
)

// TestBuildFromDirectory builds from a Yocto-shaped input: an IMAGE_ROOTFS directory, a DEPLOY_DIR_IMAGE with
// boot files, and a src:dst list, and checks the image as the other build tests do.
func TestBuildFromDirectory(t *testing.T) {
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "image-rootfs")
	deploy := filepath.Join(dir, "deploy-dir-image")
	for _, d := range []string{"etc", "usr/lib", "usr/bin", "var/log", "home/root"} {
		must(t, os.MkdirAll(filepath.Join(rootfs, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(rootfs, "usr/lib/os-release"), []byte("ID=balena-os\nVERSION_ID=\"3.1.4\"\n"), 0o644))
	must(t, os.Symlink("../usr/lib/os-release", filepath.Join(rootfs, "etc/os-release")))
	must(t, os.WriteFile(filepath.Join(rootfs, "usr/bin/tool"), []byte("#!/bin/sh\n"), 0o755))
	must(t, os.MkdirAll(filepath.Join(deploy, "dtbs"), 0o755))
	must(t, os.WriteFile(filepath.Join(deploy, "Image"), []byte("arm64 kernel"), 0o644))
	must(t, os.WriteFile(filepath.Join(deploy, "dtbs", "board.dtb"), []byte("dtb"), 0o644))
	spec := filepath.Join(dir, "spec.toml")
	must(t, os.WriteFile(spec, []byte(fmt.Sprintf(`device_type = "raspberrypi4-64"
[sizes]
root = 64
data = 16
[rootfs]
source = %q
[boot]
deploy_dir = %q
files = ["Image:/kernel8.img", "dtbs:/", "dtbs/board.dtb:/overlays/"]
`, rootfs, deploy)), 0o644))
	out := filepath.Join(dir, "img")
	mustHostos(t, nil, nil, "build", "--spec", spec, "-o", out)
	r := inspectJSON(t, out)
	if r.OSVersion != "3.1.4" || r.DeviceType != "raspberrypi4-64" || !r.Fingerprint.Verified {
		t.Fatalf("inspect: %+v", r)
	}
	if r.Partitions[1].Size != 64*mib || r.Partitions[4].Size != 16*mib {
		t.Errorf("sizes from the spec not applied: %+v", r.Partitions)
	}
	for _, p := range r.Partitions[1:] {
		e2fsckCopy(t, out, p.Start, p.Size)
	}
	fsckVfat(t, out, r.Partitions[0].Start, r.Partitions[0].Size)
	if s := debugfs(t, out, r.Partitions[1].Start, "stat /usr/bin/tool"); !strings.Contains(s, "Mode:  0755") {
		t.Errorf("/usr/bin/tool:\n%s", s)
	}
	boot := fmt.Sprintf("%s@@%d", out, r.Partitions[0].Start)
	for path, want := range map[string]string{"/kernel8.img": "arm64 kernel", "/board.dtb": "dtb", "/overlays/board.dtb": "dtb"} {
		if got := run(t, testtool.Need(t, "mtype"), "-i", boot, "::"+path); got != want {
			t.Errorf("%s in the boot partition: %q, want %q", path, got, want)
		}
	}
}
