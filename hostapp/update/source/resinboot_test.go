package source

import (
	"archive/tar"
	"bytes"
	"io"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// resinBootImage is a two-layer balenaOS-like image: the small root filesystem with /boot/init and a
// /resin-boot holding boot files and the files balena's hook and hostos leave to the device; the
// second layer replaces the kernel and deletes an overlay (a whiteout), so only the merged view is right.
func resinBootImage(t *testing.T) v1.Image {
	t.Helper()
	lower := append(rootEntries(),
		entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "boot/", Mode: 0o755}},
		reg("boot/init", "elf"),
		reg("resin-boot/kernel", "kernel 1"),
		reg("resin-boot/overlays/a.dtbo", "overlay a"),
		reg("resin-boot/overlays/gone.dtbo", "deleted above"),
		symlink("resin-boot/link", "kernel"),
		// balena's blacklist (hostapp-update-hooks.bb), whatever the case on the FAT
		reg("resin-boot/config.txt", "gpu_mem=16"),
		reg("resin-boot/CONFIGFS.JSON", "{}"),
		reg("resin-boot/hw_intfc.conf", "x"),
		reg("resin-boot/splash/balena-logo.png", "png"),
		reg("resin-boot/EFI/BOOT/grub_extraenv", "x"),
		reg("resin-boot/grub/grub_extraenv", "x"),
		reg("resin-boot/extra_uEnv.txt", "x"),
		reg("resin-boot/bootenv", "x"),
		// what the update engine never writes: the device's own files and the bootloader environment
		reg("resin-boot/config.json", `{"deviceType":"raspberrypi4-64"}`),
		reg("resin-boot/balenaos.fingerprint", "md5s"),
		reg("resin-boot/system-connections/wifi", "psk"),
		reg("resin-boot/resinOS_uEnv.txt", "resin_root_part=2"),
		reg("resin-boot/grub/grubenv", "# GRUB"),
	)
	upper := []entry{
		reg("resin-boot/kernel", "kernel 2"),
		reg("resin-boot/overlays/.wh.gone.dtbo", ""),
	}
	img := empty.Image
	for _, es := range [][]entry{lower, upper} {
		b := tarBytes(t, es)
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func ociLayout(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "oci")
	lp, err := layout.Write(dir, empty.Index)
	if err == nil {
		err = lp.AppendImage(img)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestOpenImageResinBoot: an OCI image's /resin-boot gives the payload's boot files, for a flat slot and
// a hostapp slot alike, as the merged image shows them, less balena's blacklist and the device's own
// files; so does a docker save archive's; an image without /resin-boot has none.
func TestOpenImageResinBoot(t *testing.T) {
	needTools(t)
	src := ociLayout(t, resinBootImage(t))
	want := map[string]string{"kernel": "kernel 2", "overlays/a.dtbo": "overlay a"}
	for _, hostapp := range []bool{false, true} {
		p := mustOpen(t, src, Options{DeviceType: rpi4, RootSize: slotSize, TempDir: t.TempDir(), Hostapp: hostapp, HostappCounter: 2})
		if p.Boot == nil {
			t.Fatalf("hostapp %v: no boot files", hostapp)
		}
		_, boot := readPayload(t, p)
		if !reflect.DeepEqual(boot, want) {
			t.Errorf("hostapp %v: boot files %q, want %q", hostapp, boot, want)
		}
	}
	archive := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(archive, name.MustParseReference("balena/hostapp:2"), resinBootImage(t)); err != nil {
		t.Fatal(err)
	}
	if _, boot := readPayload(t, mustOpen(t, archive, Options{RootSize: slotSize, TempDir: t.TempDir()})); !reflect.DeepEqual(boot, want) {
		t.Errorf("docker save archive: boot files %q, want %q", boot, want)
	}
	p := mustOpen(t, ociLayout(t, ociImage(t, "arm64")), Options{RootSize: slotSize, TempDir: t.TempDir()})
	if p.Boot != nil {
		t.Error("an image without /resin-boot has boot files")
	}
}
