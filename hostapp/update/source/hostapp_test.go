package source

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestHostappRefusals: for a device in balenaOS's hostapp layout, a root filesystem tar is refused (a
// hostapp slot holds an image), and so is an image without /boot/init, which no balenaOS could boot.
func TestHostappRefusals(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := "NAME=x\nVERSION_ID=1\n"
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/os-release", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body[:h.Size]))
	}
	tw.Close()
	rootTar := filepath.Join(dir, "root.tar")
	if err := os.WriteFile(rootTar, buf.Bytes(), 0o644); err != nil {
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
	oci := filepath.Join(dir, "oci")
	p, err := layout.Write(oci, empty.Index)
	if err == nil {
		err = p.AppendImage(img)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ src, want string }{
		{rootTar, "hostapp layout"},
		{oci, "/boot/init"},
	} {
		work := t.TempDir()
		_, err := Open(context.Background(), c.src, Options{RootSize: 32 << 20, TempDir: work, Hostapp: true, HostappCounter: 2})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", filepath.Base(c.src), err, c.want)
		}
		if left, _ := os.ReadDir(work); len(left) != 0 {
			t.Errorf("%s: left %d entries in the temporary directory", filepath.Base(c.src), len(left))
		}
	}
}
