package source

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostos/hostos/hostapp/build"
	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/tree"
	"github.com/hostos/hostos/tests/testtool"
)

const (
	slotSize = 16 << 20
	hello    = "#!/bin/sh\necho hello\n"
	rpi4     = "raspberrypi4-64"
)

func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		testtool.Need(t, tool)
	}
}

type entry struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755}, body: body}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

// rootEntries is a small root filesystem: os-release, a binary, a symlink.
func rootEntries() []entry {
	return []entry{reg("etc/os-release", "ID=hostos\n"), reg("usr/bin/hello", hello), symlink("bin", "usr/bin")}
}

func tarBytes(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size, h.ModTime = int64(len(e.body)), time.Unix(1700000000, 0)
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type keyPair struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func newKey(t *testing.T) keyPair {
	t.Helper()
	privPEM, pubPEM, err := bundle.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := bundle.ParsePrivateKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bundle.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{priv, pub}
}

// makeBundle makes a bundle of the small root filesystem with one boot file.
func makeBundle(t *testing.T, deviceType string, key ed25519.PrivateKey) []byte {
	t.Helper()
	needTools(t)
	d := t.TempDir()
	src := writeFile(t, filepath.Join(d, "root.tar"), tarBytes(t, rootEntries()))
	writeFile(t, filepath.Join(d, "Image"), []byte("kernel"))
	var out bytes.Buffer
	_, err := build.Bundle(context.Background(), build.BundleOptions{
		Rootfs: src, DeviceType: deviceType, Version: "3.1.4", DeployDir: d, BootFiles: []string{"Image:/boot/Image"},
		Key: key, RootSize: slotSize, TempDir: d, Epoch: time.Unix(1700000000, 0),
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// readPayload reads a payload's image into a file, judges it with e2fsck, and collects its boot files.
func readPayload(t *testing.T, p *Payload) (string, map[string]string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "slot.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(f, p.Image)
	if err != nil {
		t.Fatalf("read image: %v", err)
	}
	f.Close()
	if n != p.Size {
		t.Fatalf("image is %d bytes, payload says %d", n, p.Size)
	}
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	boot := map[string]string{}
	if p.Boot != nil {
		err := p.Boot(func(name string, _ int64, r io.Reader) error {
			b, err := io.ReadAll(r)
			boot[name] = string(b)
			return err
		})
		if err != nil {
			t.Fatalf("Boot: %v", err)
		}
	}
	return img, boot
}

func readFile(t *testing.T, img, name string) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	b, err := ext4.ReadFile(f, 0, fi.Size(), name)
	if err != nil {
		t.Fatalf("%s in the image: %v", name, err)
	}
	return string(b)
}

func mustOpen(t *testing.T, ref string, o Options) *Payload {
	t.Helper()
	p, err := Open(context.Background(), ref, o)
	if err != nil {
		t.Fatalf("Open %s: %v", ref, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("%s holds %d entries (%s...), want none", dir, len(ents), ents[0].Name())
	}
}

func TestOpenBundle(t *testing.T) {
	k := newKey(t)
	d := t.TempDir()
	signed := writeFile(t, filepath.Join(d, "signed.bundle"), makeBundle(t, rpi4, k.priv))
	unsigned := writeFile(t, filepath.Join(d, "unsigned.bundle"), makeBundle(t, rpi4, nil))
	tests := []struct {
		name, ref  string
		keys       []ed25519.PublicKey
		wantSigned bool
	}{
		{"signed with keys", signed, []ed25519.PublicKey{newKey(t).pub, k.pub}, true},
		{"signed without keys", signed, nil, false},
		{"unsigned without keys", unsigned, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			p := mustOpen(t, tc.ref, Options{Keys: tc.keys, DeviceType: rpi4, TempDir: tmp})
			if p.DeviceType != rpi4 || p.Arch != "aarch64" || p.Version != "3.1.4" || p.Size != slotSize || p.Signed != tc.wantSigned {
				t.Errorf("payload %+v", p)
			}
			if p.Boot == nil {
				t.Fatal("no Boot")
			}
			if err := p.Boot(func(string, int64, io.Reader) error { return nil }); err == nil {
				t.Error("Boot before the image was read: no error")
			}
			img, boot := readPayload(t, p)
			if got := readFile(t, img, "/bin/hello"); got != hello {
				t.Errorf("/bin/hello = %q", got)
			}
			if len(boot) != 1 || boot["boot/Image"] != "kernel" {
				t.Errorf("boot files %v", boot)
			}
			emptyDir(t, tmp) // a bundle is streamed, never stored
			if err := p.Close(); err != nil {
				t.Error(err)
			}
			if err := p.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestOpenBundleRefused(t *testing.T) {
	k := newKey(t)
	d := t.TempDir()
	signed := writeFile(t, filepath.Join(d, "signed.bundle"), makeBundle(t, rpi4, k.priv))
	unsigned := writeFile(t, filepath.Join(d, "unsigned.bundle"), makeBundle(t, rpi4, nil))
	// A bundle that names the right device type but another arch.
	img := filepath.Join(d, "rootfs.ext4")
	{
		p := mustOpen(t, unsigned, Options{})
		f, _ := os.Create(img)
		io.Copy(f, p.Image)
		f.Close()
	}
	var wrongArch bytes.Buffer
	if _, err := bundle.Create(context.Background(), bundle.CreateOptions{DeviceType: rpi4, Arch: "amd64", Version: "1",
		Image: img, TempDir: d}, &wrongArch); err != nil {
		t.Fatal(err)
	}
	wrongArchPath := writeFile(t, filepath.Join(d, "wrong-arch.bundle"), wrongArch.Bytes())

	tests := []struct {
		name, ref string
		o         Options
		want      error
	}{
		{"unsigned with keys", unsigned, Options{Keys: []ed25519.PublicKey{k.pub}}, bundle.ErrUnsigned},
		{"bad signature", signed, Options{Keys: []ed25519.PublicKey{newKey(t).pub}}, bundle.ErrBadSignature},
		{"wrong device type", signed, Options{DeviceType: "raspberrypi5"}, ErrWrongDeviceType},
		{"wrong arch", wrongArchPath, Options{DeviceType: rpi4}, ErrWrongDeviceType},
		{"too large", signed, Options{RootSize: slotSize - 1<<20}, ErrTooLarge},
		{"too large for the device type", signed, Options{DeviceType: rpi4, RootSize: 8 << 20}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.TempDir = t.TempDir()
			p, err := Open(context.Background(), tc.ref, tc.o)
			if !errors.Is(err, tc.want) {
				if p != nil {
					p.Close()
				}
				t.Fatalf("Open: %v, want %v", err, tc.want)
			}
			emptyDir(t, tc.o.TempDir)
		})
	}
}

// errPastMetadata is what guardReader returns when read beyond the metadata.
var errPastMetadata = errors.New("read past the metadata")

// guardReader serves b up to limit bytes and fails any read beyond.
type guardReader struct {
	b     []byte
	limit int
	off   int
}

func (g *guardReader) Read(p []byte) (int, error) {
	if g.off >= g.limit {
		return 0, errPastMetadata
	}
	n := copy(p, g.b[g.off:g.limit])
	g.off += n
	return n, nil
}

// metadataEnd is the offset of the end of the rootfs member's header: what NewReader reads.
func metadataEnd(t *testing.T, b []byte) int {
	t.Helper()
	r := bytes.NewReader(b)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == bundle.RootfsName {
			return len(b) - r.Len()
		}
	}
}

// A bundle that does not fit, or is for another device, is refused from its metadata alone.
func TestOpenStreamRefusesBeforePayload(t *testing.T) {
	b := makeBundle(t, rpi4, newKey(t).priv)
	end := metadataEnd(t, b)
	tests := []struct {
		name string
		o    Options
		want error
	}{
		{"too large", Options{RootSize: 4 << 20}, ErrTooLarge},
		{"wrong device type", Options{DeviceType: "genericx86-64-ext"}, ErrWrongDeviceType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := tc.o.resolve()
			if err != nil {
				t.Fatal(err)
			}
			g := &guardReader{b: b, limit: end}
			closed := false
			_, err = openStream(context.Background(), "guarded", g, func() error { closed = true; return nil }, -1, o)
			if !errors.Is(err, tc.want) || errors.Is(err, errPastMetadata) {
				t.Fatalf("openStream: %v, want %v", err, tc.want)
			}
			if !closed {
				t.Error("the stream was not closed")
			}
		})
	}
	// The guard does trip when the payload is read.
	o, _ := Options{RootSize: slotSize}.resolve()
	p, err := openStream(context.Background(), "guarded", &guardReader{b: b, limit: end}, func() error { return nil }, -1, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, p.Image); !errors.Is(err, errPastMetadata) {
		t.Fatalf("reading the payload: %v, want the guard's error", err)
	}
}

func TestOpenTruncatedBundle(t *testing.T) {
	b := makeBundle(t, rpi4, nil)
	for _, cut := range []int{len(b) / 2, len(b) - 1024} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			path := writeFile(t, filepath.Join(t.TempDir(), "cut.bundle"), b[:cut])
			p := mustOpen(t, path, Options{})
			_, err := io.Copy(io.Discard, p.Image)
			if err == nil && p.Boot != nil {
				err = p.Boot(func(string, int64, io.Reader) error { return nil })
			}
			if !errors.Is(err, bundle.ErrCorrupt) {
				t.Fatalf("reading a truncated bundle: %v, want ErrCorrupt", err)
			}
		})
	}
	// Cut inside the image: the error comes from Image's Read itself.
	path := writeFile(t, filepath.Join(t.TempDir(), "cut.bundle"), b[:metadataEnd(t, b)+1000])
	p := mustOpen(t, path, Options{})
	if _, err := io.Copy(io.Discard, p.Image); !errors.Is(err, bundle.ErrCorrupt) {
		t.Fatalf("reading a truncated image: %v, want ErrCorrupt", err)
	}
}

func TestOpenTar(t *testing.T) {
	needTools(t)
	d := t.TempDir()
	plain := writeFile(t, filepath.Join(d, "root.tar"), tarBytes(t, rootEntries()))
	testtool.Need(t, "zstd")
	zst := filepath.Join(d, "root.tar.zst")
	if out, err := exec.Command("zstd", "-q", plain, "-o", zst).CombinedOutput(); err != nil {
		t.Fatalf("zstd: %v\n%s", err, out)
	}
	dir := filepath.Join(d, "tree")
	os.MkdirAll(filepath.Join(dir, "usr", "bin"), 0o755)
	writeFile(t, filepath.Join(dir, "usr", "bin", "hello"), []byte(hello))
	os.Symlink("usr/bin", filepath.Join(dir, "bin"))

	for _, src := range []string{plain, zst, dir} {
		t.Run(filepath.Base(src), func(t *testing.T) {
			tmp := t.TempDir()
			var mu sync.Mutex
			steps := map[string]bool{}
			p := mustOpen(t, src, Options{RootSize: slotSize, TempDir: tmp, Progress: func(step string, _, _ int64) {
				mu.Lock()
				steps[step] = true
				mu.Unlock()
			}})
			if p.DeviceType != "" || p.Arch != "" || p.Version != "" || p.Signed || p.Boot != nil || p.Size != slotSize {
				t.Errorf("payload %+v", p)
			}
			img, _ := readPayload(t, p)
			if got := readFile(t, img, "/bin/hello"); got != hello {
				t.Errorf("/bin/hello = %q", got)
			}
			if !steps["make root filesystem"] || src != dir && !steps["stage root filesystem"] {
				t.Errorf("progress steps %v", steps)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			emptyDir(t, tmp)
		})
	}
}

func TestOpenTarSlotSize(t *testing.T) {
	needTools(t)
	d := t.TempDir()
	src := writeFile(t, filepath.Join(d, "root.tar"), tarBytes(t, rootEntries()))
	// The device type's root partition size, when no slot size is given.
	p := mustOpen(t, src, Options{DeviceType: "genericx86-64-ext", TempDir: d})
	if p.Size != 320<<20 {
		t.Errorf("size %d, want the device type's 320 MiB", p.Size)
	}
	p.Close()

	// A slot of an odd number of sectors gets an image of whole blocks.
	p = mustOpen(t, src, Options{RootSize: slotSize + 3*512, TempDir: d})
	if p.Size != slotSize {
		t.Errorf("size %d for a slot of %d bytes, want %d", p.Size, slotSize+3*512, slotSize)
	}
	p.Close()

	big := writeFile(t, filepath.Join(d, "big.tar"), tarBytes(t, []entry{reg("blob", strings.Repeat("x", 6<<20))}))
	tmp := t.TempDir()
	if _, err := Open(context.Background(), big, Options{RootSize: 4 << 20, TempDir: tmp}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a tree larger than the slot: %v, want ErrTooLarge", err)
	}
	emptyDir(t, tmp)
	if _, err := Open(context.Background(), src, Options{TempDir: tmp}); err == nil || !strings.Contains(err.Error(), "slot size") {
		t.Errorf("no slot size: %v", err)
	}
}

func TestOpenExt4Image(t *testing.T) {
	needTools(t)
	d := t.TempDir()
	src := writeFile(t, filepath.Join(d, "root.tar"), tarBytes(t, rootEntries()))
	p := mustOpen(t, src, Options{RootSize: 8 << 20, TempDir: d})
	img, _ := readPayload(t, p)
	p.Close()

	q := mustOpen(t, img, Options{RootSize: slotSize})
	if q.Size != 8<<20 {
		t.Errorf("size %d, want the filesystem's %d", q.Size, 8<<20)
	}
	img2, _ := readPayload(t, q)
	if got := readFile(t, img2, "/bin/hello"); got != hello {
		t.Errorf("/bin/hello = %q", got)
	}
	if _, err := Open(context.Background(), img, Options{RootSize: 4 << 20}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("an image larger than the slot: %v, want ErrTooLarge", err)
	}
}

func TestOpenNonBundleWithKeys(t *testing.T) {
	d := t.TempDir()
	src := writeFile(t, filepath.Join(d, "root.tar"), tarBytes(t, rootEntries()))
	tmp := t.TempDir()
	keys := []ed25519.PublicKey{newKey(t).pub}
	for _, ref := range []string{src, d, "docker://127.0.0.1:1/hostos/root:1"} {
		_, err := Open(context.Background(), ref, Options{Keys: keys, RootSize: slotSize, TempDir: tmp})
		if !errors.Is(err, bundle.ErrUnsigned) {
			t.Errorf("Open %s with keys: %v, want ErrUnsigned", ref, err)
		}
	}
	emptyDir(t, tmp)
}

// Archive entries cannot land outside the root: ".." paths and writes through symlinks are refused,
// while absolute symlinks, which are normal in a root filesystem, are kept as they are.
func TestOpenTarPaths(t *testing.T) {
	needTools(t)
	outside := t.TempDir()
	refused := []struct {
		name    string
		entries []entry
	}{
		{"dot-dot", []entry{reg("../evil", "x")}},
		{"dot-dot inside", []entry{reg("usr/../../evil", "x")}},
		{"through an absolute symlink", []entry{symlink("link", outside), reg("link/evil", "x")}},
		{"through a relative symlink", []entry{symlink("up", "../../../../../../.."+outside), reg("up/evil", "x")}},
		{"hard link out", []entry{{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "../../etc/passwd"}}}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			src := writeFile(t, filepath.Join(d, "evil.tar"), tarBytes(t, tc.entries))
			tmp := t.TempDir()
			_, err := Open(context.Background(), src, Options{RootSize: slotSize, TempDir: tmp})
			if !errors.Is(err, tree.ErrUnsafePath) {
				t.Fatalf("Open: %v, want ErrUnsafePath", err)
			}
			t.Logf("refused: %v", err)
			if _, err := os.Lstat(filepath.Join(outside, "evil")); err == nil {
				t.Fatal("wrote outside the staging directory")
			}
			emptyDir(t, tmp)
		})
	}

	t.Run("absolute names and symlinks", func(t *testing.T) {
		d := t.TempDir()
		src := writeFile(t, filepath.Join(d, "root.tar"), tarBytes(t, []entry{
			reg("/abs/file", "inside"), symlink("etc/x", "/../../x"), symlink("etc/passwd-link", "/etc/passwd"),
		}))
		p := mustOpen(t, src, Options{RootSize: slotSize, TempDir: d})
		img, _ := readPayload(t, p)
		if got := readFile(t, img, "/abs/file"); got != "inside" {
			t.Errorf("/abs/file = %q", got)
		}
		for name, target := range map[string]string{"/etc/x": "/../../x", "/etc/passwd-link": "/etc/passwd"} {
			out, err := ext4.Debugfs{Image: img}.Run(context.Background(), "stat "+name)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, `Fast link dest: "`+target+`"`) {
				t.Errorf("%s: want a symlink to %s, debugfs says:\n%s", name, target, out)
			}
		}
	})
}

func TestOpenHTTP(t *testing.T) {
	k := newKey(t)
	b := makeBundle(t, rpi4, k.priv)
	rootTar := tarBytes(t, rootEntries())
	var mu sync.Mutex
	served := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		served[r.URL.Path]++
		mu.Unlock()
		switch r.URL.Path {
		case "/os.bundle":
			w.Write(b)
		case "/root.tar":
			w.Header().Set("Content-Length", fmt.Sprint(len(rootTar)))
			w.Write(rootTar)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server at %s", srv.URL)
	}

	t.Run("bundle", func(t *testing.T) {
		tmp := t.TempDir()
		p := mustOpen(t, srv.URL+"/os.bundle?token=secret", Options{Keys: []ed25519.PublicKey{k.pub}, DeviceType: rpi4, TempDir: tmp})
		if !p.Signed || p.Version != "3.1.4" {
			t.Errorf("payload %+v", p)
		}
		img, boot := readPayload(t, p)
		if readFile(t, img, "/bin/hello") != hello || boot["boot/Image"] != "kernel" {
			t.Errorf("content: boot files %v", boot)
		}
		emptyDir(t, tmp)
	})
	t.Run("tar", func(t *testing.T) {
		tmp := t.TempDir()
		steps := map[string]bool{}
		p := mustOpen(t, srv.URL+"/root.tar", Options{RootSize: slotSize, TempDir: tmp,
			Progress: func(step string, _, _ int64) { steps[step] = true }})
		img, _ := readPayload(t, p)
		if readFile(t, img, "/bin/hello") != hello {
			t.Error("content")
		}
		if !steps["download"] {
			t.Errorf("progress steps %v", steps)
		}
		p.Close()
		emptyDir(t, tmp)
	})
	t.Run("not found", func(t *testing.T) {
		_, err := Open(context.Background(), srv.URL+"/nothing?sig=secret", Options{RootSize: slotSize})
		if err == nil || !strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "secret") {
			t.Fatalf("Open of a missing URL: %v", err)
		}
	})
	t.Run("keys refuse a tar before downloading it", func(t *testing.T) {
		tmp := t.TempDir()
		_, err := Open(context.Background(), srv.URL+"/root.tar", Options{Keys: []ed25519.PublicKey{k.pub}, TempDir: tmp})
		if !errors.Is(err, bundle.ErrUnsigned) {
			t.Fatalf("Open: %v, want ErrUnsigned", err)
		}
		emptyDir(t, tmp)
	})
}

func TestOpenBadOptions(t *testing.T) {
	for _, o := range []Options{{RootSize: -1}, {Keys: []ed25519.PublicKey{make([]byte, 5)}}} {
		if _, err := Open(context.Background(), "whatever", o); err == nil {
			t.Errorf("Open with %+v: no error", o)
		}
	}
	if _, err := Open(context.Background(), "", Options{}); err == nil {
		t.Error("Open of an empty reference: no error")
	}
	if _, err := Open(context.Background(), filepath.Join(t.TempDir(), "absent"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file: %v", err)
	}
}
