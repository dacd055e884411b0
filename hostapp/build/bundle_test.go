package build_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hostos/hostos/hostapp/build"
	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/tests/testtool"
)

const bundleRootSize = 16 << 20

var epoch = time.Unix(1700000000, 0)

// writeRootTar writes a small root filesystem tar: os-release, a binary, a symlink and a directory.
func writeRootTar(t *testing.T, path string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h tar.Header, body string) {
		h.Size, h.ModTime = int64(len(body)), epoch
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	add(tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755}, "")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "etc/os-release", Mode: 0o644}, "ID=hostos\nVERSION_ID=2.0.0\n")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "usr/bin/hello", Mode: 0o755}, "#!/bin/sh\necho hello\n")
	add(tar.Header{Typeflag: tar.TypeSymlink, Name: "bin", Linkname: "usr/bin"}, "")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// deployDir makes a deploy directory: a kernel with its signature, and a directory of overlays.
func deployDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	files := map[string]string{
		"Image": "kernel", "Image.sig": "kernel signature", "overlays/a.dtbo": "overlay a", "overlays/b.dtbo": "overlay b",
		"config.txt": "dtoverlay=a\n",
	}
	for name, body := range files {
		p := filepath.Join(d, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

var bootEntries = []string{"Image:/boot/Image", "overlays:/overlays/", "config.txt"}

var wantBoot = map[string]string{
	"boot/Image": "kernel", "boot/Image.sig": "kernel signature", "overlays/a.dtbo": "overlay a",
	"overlays/b.dtbo": "overlay b", "config.txt": "dtoverlay=a\n",
}

// readBundle reads a bundle back: its metadata, its root filesystem written to a file, its boot files.
func readBundle(t *testing.T, b []byte, opts ...bundle.ReadOption) (bundle.Metadata, string, map[string]string) {
	t.Helper()
	r, err := bundle.NewReader(bytes.NewReader(b), opts...)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	rootfs, err := r.Rootfs()
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "rootfs.ext4")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rootfs); err != nil {
		t.Fatalf("read rootfs: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	boot := map[string]string{}
	err = r.Boot(func(name string, _ int64, rd io.Reader) error {
		c, err := io.ReadAll(rd)
		boot[name] = string(c)
		return err
	})
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	return r.Metadata(), img, boot
}

// checkImage judges a bundle's filesystem with e2fsck and reads a file of the source from it.
func checkImage(t *testing.T, img string, size int64) {
	t.Helper()
	testtool.Need(t, "e2fsck")
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	if fi.Size() != size {
		t.Errorf("image is %d bytes, want %d", fi.Size(), size)
	}
	got, err := ext4.ReadFile(f, 0, fi.Size(), "/bin/hello")
	if err != nil || string(got) != "#!/bin/sh\necho hello\n" {
		t.Errorf("/bin/hello = %q, %v", got, err)
	}
	var label [16]byte
	if _, err := f.ReadAt(label[:], 1024+0x78); err != nil {
		t.Fatal(err)
	}
	if l, _, _ := bytes.Cut(label[:], []byte{0}); len(l) != 0 {
		t.Errorf("filesystem label %q, want none", l)
	}
}

func needMkfs(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		testtool.Need(t, tool)
	}
}

func TestBundleFromTar(t *testing.T) {
	needMkfs(t)
	d := t.TempDir()
	src := filepath.Join(d, "rootfs.tar")
	writeRootTar(t, src)
	privPEM, pubPEM, err := bundle.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := bundle.ParsePrivateKey(privPEM)
	pub, _ := bundle.ParsePublicKey(pubPEM)

	var steps []string
	var out bytes.Buffer
	m, err := build.Bundle(context.Background(), build.BundleOptions{
		Rootfs: src, DeviceType: "raspberrypi4-64", Version: "2.0.0", DeployDir: deployDir(t), BootFiles: bootEntries,
		Key: priv, RootSize: bundleRootSize, TempDir: d,
		Progress: func(step string, done, total int64) {
			if len(steps) == 0 || steps[len(steps)-1] != step {
				steps = append(steps, step)
			}
		},
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if m.DeviceType != "raspberrypi4-64" || m.Arch != "aarch64" || m.Version != "2.0.0" || m.Rootfs.ImageSize != bundleRootSize || m.Boot == nil {
		t.Errorf("metadata %+v", m)
	}
	if now := time.Now().Unix(); m.Created < now-600 || m.Created > now+5 {
		t.Errorf("created %d, want about now (%d)", m.Created, now)
	}
	if got := strings.Join(steps, ","); got != "stage root filesystem,make root filesystem,bundle" {
		t.Errorf("progress steps %s", got)
	}

	got, img, boot := readBundle(t, out.Bytes(), bundle.WithKeys(pub))
	if got.Rootfs != m.Rootfs || got.Created != m.Created {
		t.Errorf("read back %+v, Bundle returned %+v", got, m)
	}
	checkImage(t, img, bundleRootSize)
	if !equalMaps(boot, wantBoot) {
		t.Errorf("boot files %v, want %v", keys(boot), keys(wantBoot))
	}

	// Another key does not verify it.
	_, otherPEM, _ := bundle.GenerateKey(nil)
	other, _ := bundle.ParsePublicKey(otherPEM)
	if _, err := bundle.NewReader(bytes.NewReader(out.Bytes()), bundle.WithKeys(other)); !errors.Is(err, bundle.ErrBadSignature) {
		t.Errorf("NewReader with another key: %v, want ErrBadSignature", err)
	}
	// Nothing is left in the temporary directory.
	if ents, _ := os.ReadDir(d); len(ents) != 1 {
		t.Errorf("temporary directory holds %d entries, want only the source", len(ents))
	}
}

func TestBundleFromDirectory(t *testing.T) {
	needMkfs(t)
	root := t.TempDir()
	for name, body := range map[string]string{"etc/os-release": "ID=hostos\n", "usr/bin/hello": "#!/bin/sh\necho hello\n"} {
		p := filepath.Join(root, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	m, err := build.Bundle(context.Background(), build.BundleOptions{
		Rootfs: root, DeviceType: "genericx86-64-ext", Version: "2.0.1", RootSize: bundleRootSize, TempDir: t.TempDir(), Epoch: epoch,
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Arch != "amd64" || m.Boot != nil || m.Created != epoch.Unix() {
		t.Errorf("metadata %+v", m)
	}
	_, img, boot := readBundle(t, out.Bytes())
	checkImage(t, img, bundleRootSize)
	if len(boot) != 0 {
		t.Errorf("boot files %v, want none", keys(boot))
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/hello")); err != nil {
		t.Errorf("the source directory was touched: %v", err)
	}
	_, pubPEM, _ := bundle.GenerateKey(nil)
	pub, _ := bundle.ParsePublicKey(pubPEM)
	if _, err := bundle.NewReader(bytes.NewReader(out.Bytes()), bundle.WithKeys(pub)); !errors.Is(err, bundle.ErrUnsigned) {
		t.Errorf("unsigned bundle with keys: %v, want ErrUnsigned", err)
	}
}

// An ext4 image source keeps its size and content and loses its label.
func TestBundleFromExt4Image(t *testing.T) {
	needMkfs(t)
	d := t.TempDir()
	src := filepath.Join(d, "rootfs.tar")
	writeRootTar(t, src)
	var first bytes.Buffer
	if _, err := build.Bundle(context.Background(), build.BundleOptions{
		Rootfs: src, DeviceType: "genericx86-64-ext", Version: "1", RootSize: 8 << 20, TempDir: d,
	}, &first); err != nil {
		t.Fatal(err)
	}
	_, img, _ := readBundle(t, first.Bytes())
	out, err := exec.Command("debugfs", "-w", "-R", "ssv volume_name resin-rootA", img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}

	var second bytes.Buffer
	m, err := build.Bundle(context.Background(), build.BundleOptions{
		Rootfs: img, DeviceType: "genericx86-64-ext", Version: "2", RootSize: bundleRootSize, TempDir: d,
	}, &second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Rootfs.ImageSize != 8<<20 {
		t.Errorf("image size %d, want the source's %d", m.Rootfs.ImageSize, 8<<20)
	}
	_, img2, _ := readBundle(t, second.Bytes())
	checkImage(t, img2, 8<<20)
}

func TestBundleReproducible(t *testing.T) {
	needMkfs(t)
	d := t.TempDir()
	src := filepath.Join(d, "rootfs.tar.zst")
	plain := filepath.Join(d, "rootfs.tar")
	writeRootTar(t, plain)
	testtool.Need(t, "zstd")
	if out, err := exec.Command("zstd", "-q", plain, "-o", src).CombinedOutput(); err != nil {
		t.Fatalf("zstd: %v\n%s", err, out)
	}
	privPEM, _, _ := bundle.GenerateKey(nil)
	priv, _ := bundle.ParsePrivateKey(privPEM)
	deploy := deployDir(t)
	mk := func() []byte {
		var out bytes.Buffer
		_, err := build.Bundle(context.Background(), build.BundleOptions{
			Rootfs: src, DeviceType: "raspberrypi4-64", Version: "2.0.0", DeployDir: deploy, BootFiles: bootEntries,
			Key: priv, Epoch: epoch, RootSize: bundleRootSize, TempDir: t.TempDir(),
		}, &out)
		if err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	a, b := mk(), mk()
	if !bytes.Equal(a, b) {
		t.Fatalf("two bundles of the same inputs and epoch differ (%d and %d bytes)", len(a), len(b))
	}
	m, _, boot := readBundle(t, a)
	if m.Created != epoch.Unix() || !equalMaps(boot, wantBoot) {
		t.Errorf("metadata %+v, boot files %v", m, keys(boot))
	}
}

func TestBundleRefuses(t *testing.T) {
	d := t.TempDir()
	src := filepath.Join(d, "rootfs.tar")
	writeRootTar(t, src)
	big := filepath.Join(d, "big")
	os.MkdirAll(big, 0o755)
	if err := os.WriteFile(filepath.Join(big, "blob"), bytes.Repeat([]byte("x"), 5<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := build.BundleOptions{Rootfs: src, DeviceType: "genericx86-64-ext", Version: "1", RootSize: bundleRootSize, TempDir: d}
	tests := []struct {
		name string
		edit func(*build.BundleOptions)
		want string
	}{
		{"no version", func(o *build.BundleOptions) { o.Version = "" }, "no version"},
		{"no device type", func(o *build.BundleOptions) { o.DeviceType = "" }, "no device type"},
		{"unknown device type", func(o *build.BundleOptions) { o.DeviceType = "toaster" }, "unknown device type"},
		{"odd root size", func(o *build.BundleOptions) { o.RootSize = 1000 }, "multiple of 4 KiB"},
		{"bad boot file", func(o *build.BundleOptions) { o.BootFiles = []string{":/x"} }, "empty source"},
		{"missing boot file", func(o *build.BundleOptions) { o.BootFiles = []string{"nothing-here"} }, "nothing-here"},
		{"missing rootfs", func(o *build.BundleOptions) { o.Rootfs = filepath.Join(d, "absent") }, "no such file"},
		{"too big", func(o *build.BundleOptions) { o.Rootfs, o.RootSize = big, 4<<20 }, "root filesystem does not fit: it needs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.name, "boot") || strings.Contains(tc.name, "big") {
				needMkfs(t)
			}
			o := ok
			tc.edit(&o)
			var out bytes.Buffer
			_, err := build.Bundle(context.Background(), o, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Bundle: %v, want an error with %q", err, tc.want)
			}
			if tc.name == "too big" && out.Len() != 0 {
				t.Errorf("wrote %d bytes before refusing", out.Len())
			}
		})
	}
	if ents, _ := os.ReadDir(d); len(ents) != 2 {
		t.Errorf("temporary directory holds %d entries, want the two sources", len(ents))
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// An empty Rootfs means the embedded default root filesystem, as for Build.
func TestBundleDefaultRoot(t *testing.T) {
	needMkfs(t)
	var out bytes.Buffer
	if _, err := build.Bundle(context.Background(), build.BundleOptions{
		DeviceType: "genericx86-64-ext", Version: "9.9.9", RootSize: 128 << 20, TempDir: t.TempDir(), Epoch: epoch,
	}, &out); err != nil {
		t.Fatal(err)
	}
	_, img, _ := readBundle(t, out.Bytes())
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	osr, err := ext4.ReadFile(f, 0, 128<<20, "/etc/os-release")
	if err != nil || !strings.Contains(string(osr), "9.9.9") {
		t.Errorf("/etc/os-release = %q, %v", osr, err)
	}
	if _, err := ext4.ReadFile(f, 0, 128<<20, "/usr/bin/hostos"); err != nil {
		t.Errorf("/usr/bin/hostos: %v", err)
	}
}
