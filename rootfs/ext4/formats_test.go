//go:build unix

package ext4

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hostos/hostos/rootfs/tree"
)

func tarBytes(t *testing.T, entries []entry) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layer.tar")
	writeTar(t, p, "", entries)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readableByAll lets every user read and walk dir, an OCI layout that layout.Write made private to its
// writer: the builder is another user.
func readableByAll(t *testing.T, dir string) {
	t.Helper()
	if err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chmod(p, fi.Mode().Perm()|0o555)
	}); err != nil {
		t.Fatal(err)
	}
}

// layerOf is a layer holding entries.
func layerOf(t *testing.T, entries []entry) v1.Layer {
	t.Helper()
	b := tarBytes(t, entries)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// twoLayerImage has a lower layer and an upper one that replaces /etc/marker and whites out /etc/removed.
func twoLayerImage(t *testing.T) v1.Image {
	t.Helper()
	lower := []entry{
		dir("etc/", 0o755, 0, 0),
		file("etc/marker", 0o644, 0, 0, "one"),
		file("etc/removed", 0o644, 0, 0, "gone"),
		dir("home/u/", 0o700, 1000, 1000),
	}
	upper := []entry{
		file("etc/marker", 0o644, 0, 0, "two"),
		file("etc/.wh.removed", 0o644, 0, 0, ""),
		file("etc/added", 0o600, 0, 0, "new"),
	}
	img, err := mutate.AppendLayers(empty.Image, layerOf(t, lower), layerOf(t, upper))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestSources(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs", "e2fsck", "xz")
	d := sharedDir(t)
	markerOnly := []entry{dir("./", 0o755, 0, 0), dir("etc/", 0o755, 0, 0), file("etc/marker", 0o644, 0, 0, "two"), dir("home/u/", 0o700, 1000, 1000)}

	ociDir := filepath.Join(d, "oci")
	p, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(twoLayerImage(t)); err != nil {
		t.Fatal(err)
	}
	// An image of one layer, which is staged from its blob as a .tar.gz is.
	one, err := mutate.AppendLayers(empty.Image, layerOf(t, markerOnly))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := layout.Write(filepath.Join(d, "oci-one"), empty.Index); err != nil {
		t.Fatal(err)
	}
	onePath, err := layout.FromPath(filepath.Join(d, "oci-one"))
	if err != nil {
		t.Fatal(err)
	}
	if err := onePath.AppendImage(one); err != nil {
		t.Fatal(err)
	}
	readableByAll(t, ociDir)
	readableByAll(t, filepath.Join(d, "oci-one"))
	tag, err := name.NewTag("hostos/test:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(filepath.Join(d, "docker.tar"), tag, twoLayerImage(t)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"gzip", "xz", "zstd"} {
		writeTar(t, filepath.Join(d, "rootfs.tar."+c), c, markerOnly)
	}
	// A directory source, and an ext4 image made from it.
	rootDir := filepath.Join(d, "rootdir")
	if err := os.MkdirAll(filepath.Join(rootDir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootDir, "etc", "marker"), []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	ext4Src := filepath.Join(d, "source.ext4")
	if err := os.WriteFile(ext4Src, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(ext4Src, 32<<20); err != nil {
		t.Fatal(err)
	}
	scanned, err := tree.Scan(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Make(context.Background(), ext4Src, 0, 32<<20, Options{Label: "old-label"}, scanned); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		src     string
		kind    tree.Kind
		removed bool
	}{
		{"rootfs.tar.gzip", tree.KindTar, false},
		{"rootfs.tar.xz", tree.KindTar, false},
		{"rootfs.tar.zstd", tree.KindTar, false},
		{"oci", tree.KindOCI, true},
		{"oci-one", tree.KindOCI, false},
		{"docker.tar", tree.KindDockerArchive, true},
		{"rootdir", tree.KindDir, false},
		{"source.ext4", tree.KindExt4, false},
	}
	for _, tc := range tests {
		t.Run(tc.src, func(t *testing.T) {
			src := filepath.Join(d, tc.src)
			kind, err := tree.Detect(src)
			if err != nil || kind != tc.kind {
				t.Fatalf("Detect = %q, %v; want %q", kind, err, tc.kind)
			}
			img := filepath.Join(d, tc.src+".img")
			newImage(t, img)
			if err := buildAsNobody(t, d, src, img); err != nil {
				t.Fatal(err)
			}
			if err := Check(context.Background(), img, partOff); err != nil {
				t.Fatal(err)
			}
			if got := catFile(t, img, "/etc/marker"); got != "two" {
				t.Errorf("/etc/marker = %q, want %q", got, "two")
			}
			if lbl := volumeName(t, img); lbl != testOptions.Label {
				t.Errorf("label %q, want %q", lbl, testOptions.Label)
			}
			if tc.removed {
				if _, err := (Debugfs{Image: img, Offset: partOff}).Run(context.Background(), "stat /etc/removed"); err == nil {
					t.Error("whited-out /etc/removed is present")
				}
				if got := catFile(t, img, "/etc/added"); got != "new" {
					t.Errorf("/etc/added = %q", got)
				}
				if in := statPath(t, img, "/home/u"); in.uid != 1000 || in.gid != 1000 || in.mode != 0o700 {
					t.Errorf("/home/u: %d:%d %04o", in.uid, in.gid, in.mode)
				}
			}
		})
	}
}

func TestSourceErrors(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs")
	d := sharedDir(t)
	unreadable := filepath.Join(d, "unreadable.tar")
	writeTar(t, unreadable, "", rootfsEntries())
	if err := os.Chmod(unreadable, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "junk"), bytes.Repeat([]byte("junk"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	writeTar(t, filepath.Join(d, "escape.tar"), "gzip", []entry{file("../../etc/evil", 0o644, 0, 0, "x")})
	// An OCI layout of one uncompressed layer, a byte of a file in it changed: still a well-formed tar,
	// whose digest no longer matches: staging it fails.
	layer := static.NewLayer(tarBytes(t, []entry{dir("etc/", 0o755, 0, 0), file("etc/marker", 0o644, 0, 0, "two")}), types.OCIUncompressedLayer)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(d, "tampered.oci"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	ld, err := layer.Digest()
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(d, "tampered.oci", "blobs", ld.Algorithm, ld.Hex)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[bytes.Index(b, []byte("two"))] = 'T'
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	readableByAll(t, filepath.Join(d, "tampered.oci"))
	tests := []struct {
		src, want string
	}{
		{"missing.tar", "no such file or directory"},
		{"unreadable.tar", "permission denied"},
		{"junk", "unknown format"},
		{"escape.tar", "unsafe path"},
		{"tampered.oci", "its bytes hash to " + ld.String()[:7]},
	}
	for _, tc := range tests {
		t.Run(tc.src, func(t *testing.T) {
			if tc.src == "unreadable.tar" && os.Geteuid() != 0 {
				if err := os.Chmod(filepath.Join(d, tc.src), 0); err != nil {
					t.Fatal(err)
				}
			}
			img := filepath.Join(d, tc.src+".img")
			newImage(t, img)
			err := buildAsNobody(t, d, filepath.Join(d, tc.src), img)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestEstimateRefuses(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs", "e2fsck")
	ctx := context.Background()
	d := t.TempDir()
	big := make([]byte, 24<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	src := filepath.Join(d, "big.tar")
	writeTar(t, src, "", []entry{dir("./", 0o755, 0, 0), file("blob", 0o644, 0, 0, string(big))})
	st, err := tree.Stage(ctx, src, filepath.Join(d, "stage"), nil)
	if err != nil {
		t.Fatal(err)
	}
	need := Estimate(st, testOptions)
	if need < int64(len(big)) {
		t.Fatalf("Estimate %d below the data size %d", need, len(big))
	}
	img := filepath.Join(d, "disk.img")
	newImage(t, img)
	small := int64(16 << 20)
	err = Make(ctx, img, partOff, small, testOptions, st)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Make into %d bytes: %v, want ErrNoSpace", small, err)
	}
	if !strings.Contains(err.Error(), "MiB short") {
		t.Errorf("error %q does not say how much is missing", err)
	}
	if fs, err := FilesystemSize(mustOpen(t, img), partOff); err == nil {
		t.Fatalf("refused Make wrote a filesystem of %d bytes", fs)
	}
	// The estimate itself must be enough.
	if err := Make(ctx, img, partOff, need, testOptions, st); err != nil {
		t.Fatalf("Make into the estimated %d bytes: %v", need, err)
	}
	if err := Check(ctx, img, partOff); err != nil {
		t.Fatal(err)
	}
	if got := statPath(t, img, "/blob"); got.typ != "regular" {
		t.Errorf("/blob: %+v", got)
	}
}

func mustOpen(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestCopyImageTooBig(t *testing.T) {
	requireTools(t, "mkfs.ext4")
	ctx := context.Background()
	d := t.TempDir()
	src := filepath.Join(d, "src.ext4")
	if err := os.WriteFile(src, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(src, 32<<20); err != nil {
		t.Fatal(err)
	}
	if err := Make(ctx, src, 0, 32<<20, Options{}, nil); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(d, "disk.img")
	newImage(t, img)
	if err := CopyImage(ctx, img, partOff, 16<<20, src, "x"); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("CopyImage of 32 MiB into 16 MiB: %v, want ErrNoSpace", err)
	}
}

// TestQuote runs names debugfs must read back exactly.
func TestQuote(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs")
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "disk.img")
	newImage(t, img)
	if err := Make(ctx, img, partOff, partSize, Options{}, nil); err != nil {
		t.Fatal(err)
	}
	names := []string{`plain`, `with space`, `"quoted"`, `a""b`, `tab	here`, `<12>`, `-dash`, `#hash`, `semi;colon`, `back\slash`, `ünï`}
	d := Debugfs{Image: img, Offset: partOff}
	for _, n := range names {
		// Absolute: debugfs reads a bare "<12>" as inode 12.
		q, err := Quote("/" + n)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Apply(ctx, []string{"mkdir " + q, "sif " + q + " uid 4242"}); err != nil {
			t.Fatalf("%q: %v", n, err)
		}
		if in := statPath(t, img, "/"+n); in.uid != 4242 || in.typ != "directory" {
			t.Errorf("%q: %+v", n, in)
		}
	}
	if _, err := Quote("line\nbreak"); err == nil {
		t.Error("Quote accepted a line break")
	}
	if err := d.Apply(ctx, []string{`sif "/does not exist" uid 1`}); err == nil {
		t.Error("Apply hid a failing command")
	}
}
