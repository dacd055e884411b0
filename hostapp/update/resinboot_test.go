package update

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/partition/disk"
)

// resinBootHostapp is a balenaOS-like image of version 2.0.0: os-release, /boot/init, and the new OS's
// boot files under /resin-boot, with a config.json and a config.txt of its own that must not replace
// the device's.
func resinBootHostapp(t *testing.T, kernel string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct{ name, body string }{
		{"etc/", ""},
		{"etc/os-release", "NAME=balenaOS\nVERSION_ID=2.0.0\n"},
		{"boot/", ""},
		{"boot/init", "elf"},
		{"resin-boot/", ""},
		{"resin-boot/kernel", kernel},
		{"resin-boot/overlays/", ""},
		{"resin-boot/overlays/new.dtbo", "overlay"},
		{"resin-boot/config.json", `{"deviceType":"the image's"}`},
		{"resin-boot/config.txt", "the image's"},
	}
	for _, f := range files {
		h := &tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.body)), ModTime: time.Unix(1700000000, 0)}
		if strings.HasSuffix(f.name, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestUpdateFromImageInstallsResinBoot: on a U-Boot device (raspberrypi4-64), an update from an OCI
// image, into a flat slot and into a hostapp slot, installs the image's /resin-boot into the boot
// partition (the new kernel, an added overlay) and leaves the device's config.json and config.txt; a
// rollback puts version 1's boot files back.
func TestUpdateFromImageInstallsResinBoot(t *testing.T) {
	kernel1, kernel2 := strings.Repeat("one ", 5000), strings.Repeat("image ", 4000)
	for _, hostapp := range []bool{false, true} {
		name := map[bool]string{false: "flat", true: "hostapp"}[hostapp]
		t.Run(name, func(t *testing.T) {
			img, _ := crashFixture(t, "raspberrypi4-64")
			src := hostappLayout(t, resinBootHostapp(t, kernel2))
			var err error
			if hostapp {
				writeHostappSlot(t, img, bootenv.SlotA, "1.0.0")
				_, err = updateHostapp(t, img, src, -1)
			} else {
				_, err = runUpdate(t, img, src, -1)
			}
			if err != nil {
				t.Fatal(err)
			}
			d, err := disk.Open(img, true)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			tg, err := OpenImage(d, bootenv.SlotB)
			if err != nil {
				t.Fatal(err)
			}
			for f, want := range map[string]string{"/kernel": kernel2, "/overlays/new.dtbo": "overlay"} {
				if b, err := tg.Boot.ReadFile(f); err != nil || string(b) != want {
					t.Errorf("after the update, %s is not the image's (%d bytes, %v)", f, len(b), err)
				}
			}
			for _, f := range []string{"/config.json", "/config.txt"} {
				if b, err := tg.Boot.ReadFile(f); err == nil && strings.Contains(string(b), "the image's") {
					t.Errorf("after the update, the device's %s is the image's", f)
				}
			}
			if s, err := tg.Status(); err != nil || s.Versions[bootenv.SlotB] != "2.0.0" || s.Env.Root != bootenv.SlotB {
				t.Fatalf("status %+v, %v; want B 2.0.0 on trial", s, err)
			}
			if _, err := tg.Rollback(); err != nil {
				t.Fatal(err)
			}
			checkRolledBack(t, tg, "rollback", kernel1, true)
		})
	}
}
