package inspect

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hostos/hostos/hostapp/build"
	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/enginestore"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/hostappfs"
	"github.com/hostos/hostos/rootfs/probe"
	"github.com/hostos/hostos/rootfs/tree"
	"github.com/hostos/hostos/tests/testtool"
)

// TestInspectHostappSlot: an image whose first root slot holds balenaOS's hostapp layout reports the
// version of the OS in the container current names, not the boot partition's.
func TestInspectHostappSlot(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "debugfs", "mkfs.vfat", "mcopy"} {
		testtool.Need(t, tool)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "flat")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("NAME=balenaOS\nVERSION_ID=1.0.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := build.ParseSpec([]byte(fmt.Sprintf(`device_type = "genericx86-64-ext"
version = "1.0.0"
[sizes]
boot = 40
root = 24
state = 8
data = 12
[rootfs]
source = %q
`, root)), "inspect.toml", dir)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.img")
	when := time.Unix(1700000000, 0)
	if _, err := build.Build(context.Background(), spec, img, build.WithEpoch(when)); err != nil {
		t.Fatal(err)
	}

	// Root A becomes a hostapp slot of version 3.1.4.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	osr := "NAME=\"balenaOS\"\nVERSION_ID=3.1.4\n"
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/os-release", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(osr))},
		{Name: "boot/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "boot/init", Typeflag: tar.TypeSymlink, Linkname: "/sbin/init"},
	} {
		h.ModTime = when
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(osr))
		}
	}
	tw.Close()
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	hostapp, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	stage := filepath.Join(dir, "slot")
	if err := os.Mkdir(stage, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := hostappfs.Stage(context.Background(), &tree.Staged{Dir: stage}, enginestore.Image{Image: hostapp})
	if err != nil {
		t.Fatal(err)
	}
	d, err := disk.Open(img, false)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := partition.Read(d, d.Size(), d.SectorSize())
	if err != nil {
		t.Fatal(err)
	}
	rootA, err := probe.Locate(d, pt, partition.RootA.ImageLabels()...)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if err := ext4.Make(context.Background(), img, rootA.Start, rootA.Size, ext4.Options{Label: "resin-rootA", Time: when}, st.Tree); err != nil {
		t.Fatal(err)
	}

	d, err = disk.Open(img, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r, err := Inspect(d)
	if err != nil {
		t.Fatal(err)
	}
	if r.OSVersion != "3.1.4" || !strings.Contains(r.OSReleaseFrom, "hostapp") {
		t.Fatalf("os %q from %q, want 3.1.4 from the hostapp container", r.OSVersion, r.OSReleaseFrom)
	}
}
