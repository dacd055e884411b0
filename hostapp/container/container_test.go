package container

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var (
	amd64   = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64   = v1.Platform{OS: "linux", Architecture: "arm64"}
	armv7   = v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	armv6   = v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}
	unknown = v1.Platform{OS: "unknown", Architecture: "unknown"}
)

// tarOf is a tar of regular files, name → content.
func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)),
			ModTime: time.Unix(1700000000, 0)}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// image is a one-layer image holding /etc/arch = tag, whose config says it is for p (nil: says nothing).
func image(t *testing.T, tag string, p *v1.Platform) v1.Image {
	t.Helper()
	b := tarOf(t, map[string]string{"etc/arch": tag})
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	if p != nil {
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cfg = cfg.DeepCopy()
		cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
		if img, err = mutate.ConfigFile(img, cfg); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// multiArch is an index of amd64, arm64 and arm/v7 images and an attestation-like unknown/unknown one.
func multiArch(t *testing.T) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, p := range []v1.Platform{amd64, arm64, armv7, unknown} {
		adds = append(adds, mutate.IndexAddendum{Add: image(t, p.String(), &p), Descriptor: v1.Descriptor{Platform: &p}})
	}
	return mutate.AppendManifests(empty.Index, adds...)
}

// archOf reads /etc/arch from the image's flattened filesystem.
func archOf(t *testing.T, img v1.Image) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("image has no /etc/arch: %v", err)
		}
		if h.Name == "etc/arch" {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
}

// tarDir makes a plain tar of the directory dir (an OCI archive of a layout).
func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPlatformOf(t *testing.T) {
	for arch, want := range map[string]v1.Platform{"aarch64": arm64, "armv7hf": armv7, "rpi": armv6, "amd64": amd64,
		"i386": {OS: "linux", Architecture: "386"}, "i386-nlp": {OS: "linux", Architecture: "386"}} {
		got, err := PlatformOf(arch)
		if err != nil || got.String() != want.String() {
			t.Errorf("PlatformOf(%s) = %s, %v; want %s", arch, got, err, want)
		}
	}
	if _, err := PlatformOf("sparc"); err == nil {
		t.Error("PlatformOf(sparc): no error")
	}
}

func TestParseCredentials(t *testing.T) {
	a, err := ParseCredentials("user:pa:ss\n")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := a.Authorization()
	if cfg.Username != "user" || cfg.Password != "pa:ss" {
		t.Errorf("got %+v", cfg)
	}
	for _, s := range []string{"", "user", ":s3cr3t", "user:", "user:s3\ncr3t", "user:s3cr3t\x1b[2J"} {
		if _, err := ParseCredentials(s); err == nil || strings.Contains(err.Error(), "s3") {
			t.Errorf("ParseCredentials(%q): %v, want an error that does not echo the password", s, err)
		}
	}
}

// The local sources: an OCI layout, the same layout as an OCI archive, a docker save archive; each for
// the platforms it has, and refused naming both for one it has not.
func TestOpenLocal(t *testing.T) {
	d := t.TempDir()
	multi := filepath.Join(d, "multi")
	if _, err := layout.Write(multi, multiArch(t)); err != nil {
		t.Fatal(err)
	}
	multiTar := filepath.Join(d, "multi.tar")
	tarDir(t, multi, multiTar)
	single := filepath.Join(d, "single")
	lp, err := layout.Write(single, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(image(t, "any", nil)); err != nil {
		t.Fatal(err)
	}
	docker := filepath.Join(d, "docker.tar")
	armImg := image(t, "docker-arm64", &arm64)
	if err := tarball.WriteToFile(docker, name.MustParseReference("hostos/app:1"), armImg); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, ref string
		p         v1.Platform
		want      string // /etc/arch, or the error's text
		wantErr   error
	}{
		{"layout amd64", multi, amd64, "linux/amd64", nil},
		{"layout arm64", multi, arm64, "linux/arm64", nil},
		{"layout arm/v7", multi, armv7, "linux/arm/v7", nil},
		{"layout arm/v6", multi, armv6, "it holds linux/amd64, linux/arm64, linux/arm/v7, the target needs linux/arm/v6", ErrPlatform},
		{"archive arm64", multiTar, arm64, "linux/arm64", nil},
		{"archive arm/v6", multiTar, armv6, "the target needs linux/arm/v6", ErrPlatform},
		{"single without platform", single, armv6, "any", nil},
		{"docker arm64", docker, arm64, "docker-arm64", nil},
		{"docker for amd64", docker, amd64, "the image is for linux/arm64, the target needs linux/amd64", ErrPlatform},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Open(context.Background(), tc.ref, Options{Platform: tc.p})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Open: %v, want %v saying %q", err, tc.wantErr, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := archOf(t, img); got != tc.want {
				t.Errorf("/etc/arch = %q, want %q", got, tc.want)
			}
		})
	}

	// The archive gives the manifests' own digests and config bytes, as the layout does.
	fromDir, err := Open(context.Background(), multi, Options{Platform: arm64})
	if err != nil {
		t.Fatal(err)
	}
	fromTar, err := Open(context.Background(), multiTar, Options{Platform: arm64})
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := fromDir.Digest()
	d2, _ := fromTar.Digest()
	c1, _ := fromDir.RawConfigFile()
	c2, _ := fromTar.RawConfigFile()
	if d1 != d2 || !bytes.Equal(c1, c2) {
		t.Errorf("archive: digest %s config %d bytes; layout: %s, %d bytes", d2, len(c2), d1, len(c1))
	}
	// A docker archive: config bytes as saved.
	img, err := Open(context.Background(), docker, Options{Platform: arm64})
	if err != nil {
		t.Fatal(err)
	}
	c3, _ := img.RawConfigFile()
	c4, _ := armImg.RawConfigFile()
	if !bytes.Equal(c3, c4) {
		t.Error("docker archive: config bytes differ from the saved image's")
	}
}

func TestOpenLocalBad(t *testing.T) {
	d := t.TempDir()
	multi := filepath.Join(d, "multi")
	if _, err := layout.Write(multi, multiArch(t)); err != nil {
		t.Fatal(err)
	}
	// An OCI archive whose arm64 layer is corrupted: the read of the layer fails on its digest.
	img, _ := Open(context.Background(), multi, Options{Platform: arm64})
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	blob := filepath.Join(multi, "blobs", "sha256", ld.Hex)
	b, _ := os.ReadFile(blob)
	b[len(b)/2] ^= 0xff
	os.WriteFile(blob, b, 0o644)
	corrupt := filepath.Join(d, "corrupt.tar")
	tarDir(t, multi, corrupt)
	img, err := Open(context.Background(), corrupt, Options{Platform: arm64})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ = img.Layers()
	rc, err := layers[0].Compressed()
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Errorf("corrupted layer: %v", err)
	}

	rootTar := filepath.Join(d, "root.tar")
	os.WriteFile(rootTar, tarOf(t, map[string]string{"etc/os-release": "ID=x\n"}), 0o644)
	gz := filepath.Join(d, "x.tar.gz")
	os.WriteFile(gz, []byte{0x1f, 0x8b, 8, 0, 0, 0}, 0o644)
	emptyDir := filepath.Join(d, "empty")
	os.Mkdir(emptyDir, 0o755)
	for ref, want := range map[string]string{
		rootTar:                    "no image archive",
		gz:                         "decompress it first",
		emptyDir:                   "not an OCI image layout",
		filepath.Join(d, "absent"): "no such file",
		"":                         "empty reference",
	} {
		sum := sumTree(t, d)
		_, err := Open(context.Background(), ref, Options{Platform: amd64})
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Open(%q): %v, want one line saying %q", ref, err, want)
		}
		if sumTree(t, d) != sum {
			t.Errorf("Open(%q) changed its input", ref)
		}
	}
}

// sumTree is the names, sizes and modification times under dir.
func sumTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := e.Info()
		fmt.Fprintf(&b, "%s %d %s\n", p, fi.Size(), fi.ModTime())
		return nil
	})
	return b.String()
}
