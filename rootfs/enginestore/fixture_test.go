package enginestore

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var fixtureTime = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// tarEntry is one entry of a hand-made layer.
type tarEntry struct {
	name, link string
	typ        byte
	mode       int64
	uid, gid   int
	data       []byte
	xattrs     map[string]string
}

func dir(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeDir, mode: 0o755} }
func file(name, data string, mode int64) tarEntry {
	return tarEntry{name: name, typ: tar.TypeReg, mode: mode, data: []byte(data)}
}

// capNetRaw is a security.capability value (VFS_CAP_REVISION_2, effective) granting CAP_NET_RAW.
func capNetRaw() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000001)
	binary.LittleEndian.PutUint32(b[4:], 1<<13)
	return string(b)
}

// writeTar writes a layer tar and returns its path.
func writeTar(t testing.TB, dir, name string, entries []tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: fixtureTime,
			Linkname: e.link, Size: int64(len(e.data)), Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if len(e.xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture holds the layer tars and OCI layouts of the test images.
type fixture struct {
	dir    string
	tars   map[string]string // layer name → tar path
	images map[string][]string
	layout string
}

// fixtureLayers are the hand-made layers: a base with the checker binary, a symlink, a hard link, a
// capability, a 0600 file of another owner and files later hidden; a layer with a whiteout and an opaque
// directory; then one top layer per image.
func fixtureLayers(checker []byte) map[string][]tarEntry {
	return map[string][]tarEntry{
		"base": {
			dir("bin/"), dir("etc/"), dir("data/"), dir("data/old/"),
			{name: "bin/check", typ: tar.TypeReg, mode: 0o755, data: checker},
			file("etc/hello", "hello from the base layer\n", 0o644),
			{name: "etc/hard", typ: tar.TypeLink, link: "etc/hello", mode: 0o644},
			{name: "etc/link", typ: tar.TypeSymlink, link: "hello", mode: 0o777},
			file("etc/removed", "whited out above\n", 0o644),
			{name: "etc/secret", typ: tar.TypeReg, mode: 0o600, uid: 1000, gid: 1001, data: []byte("secret\n")},
			{name: "bin/ping", typ: tar.TypeReg, mode: 0o755, data: []byte("not really ping\n"),
				xattrs: map[string]string{"security.capability": capNetRaw()}},
			file("data/old/a.txt", "hidden by the opaque directory\n", 0o644),
			file("data/old/b.txt", "hidden too\n", 0o644),
			{name: "data/locked/", typ: tar.TypeDir, mode: 0o500},
			file("data/locked/inside", "in a read-only directory\n", 0o400),
		},
		"mid": {
			dir("etc/"), {name: "etc/.wh.removed", typ: tar.TypeReg, mode: 0o644},
			dir("data/"), dir("data/old/"), {name: "data/old/.wh..wh..opq", typ: tar.TypeReg, mode: 0o644},
			file("data/old/new.txt", "the only file left\n", 0o644),
		},
		"topA": {dir("app/"), file("app/a.txt", "image a\n", 0o644)},
		"topB": {dir("app/"), file("app/b.txt", "image b\n", 0o640)},
		"topC": {dir("app/"), file("app/c.txt", "image c, loaded by the engine\n", 0o644)},
	}
}

// fixtureImages lists each image's layers, base first.
var fixtureImages = map[string][]string{
	"a": {"base", "mid", "topA"},
	"b": {"base", "mid", "topB"},
	"c": {"base", "topC"},
}

// newFixture writes the layer tars and one OCI layout holding every fixture image.
func newFixture(t testing.TB, checker []byte) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), tars: map[string]string{}, images: fixtureImages}
	for name, entries := range fixtureLayers(checker) {
		f.tars[name] = writeTar(t, f.dir, name, entries)
	}
	f.layout = filepath.Join(f.dir, "oci")
	p, err := layout.Write(f.layout, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		img := f.build(t, name)
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": name})); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// build makes the image from its layer tars (gzip-compressed by go-containerregistry).
func (f *fixture) build(t testing.TB, name string) v1.Image {
	t.Helper()
	var layers []v1.Layer
	for _, l := range f.images[name] {
		layer, err := tarball.LayerFromFile(f.tars[l])
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, layer)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Created = v1.Time{Time: fixtureTime}
	cfg.Config.Entrypoint = []string{"/bin/check"}
	cfg.Config.Labels = map[string]string{"fixture": name}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// image reads a fixture image back from the OCI layout, as the preload flow does.
func (f *fixture) image(t testing.TB, name string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(f.layout)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == name {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("fixture image %s not in the layout", name)
	return nil
}

// storeImage is the Image to add for fixture image name.
func (f *fixture) storeImage(t testing.TB, name string) Image {
	t.Helper()
	img := f.image(t, name)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return Image{Image: img, Tags: []string{"hostos-test/" + name + ":v1"}, ManifestDigest: d,
		SourceRepo: "registry.example/hostos-test/" + name}
}
