package tree

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ociLayer is a layer as an OCI layout holds it: its blob, of mediaType, holding the tar raw.
type ociLayer struct {
	raw, blob []byte
	mediaType string
}

// writeOCI writes an OCI layout of one image whose one layer is blob, of mediaType, holding the tar raw.
func writeOCI(t *testing.T, dir string, raw, blob []byte, mediaType string) {
	t.Helper()
	writeOCILayers(t, dir, []ociLayer{{raw, blob, mediaType}})
}

// writeOCILayers writes an OCI layout of one image of the layers, lowest first.
func writeOCILayers(t *testing.T, dir string, layers []ociLayer) {
	t.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) string {
		h := sha(b)
		if err := os.WriteFile(filepath.Join(blobs, h), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return h
	}
	var diffIDs, descs []string
	for _, l := range layers {
		diffIDs = append(diffIDs, fmt.Sprintf(`"sha256:%s"`, sha(l.raw)))
		descs = append(descs, fmt.Sprintf(`{"mediaType":%q,"digest":"sha256:%s","size":%d}`, l.mediaType, put(l.blob), len(l.blob)))
	}
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]}}`, strings.Join(diffIDs, ",")))
	cfgHex := put(cfg)
	man := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},`+
		`"layers":[%s]}`, cfgHex, len(cfg), strings.Join(descs, ",")))
	manHex := put(man)
	index := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d}]}`, manHex, len(man))
	if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeDockerSave writes a docker save archive of one image whose one layer is the tar layer, with the
// diff id diffID, and members after the layer, as docker writes them.
func writeDockerSave(t *testing.T, path string, layer []byte, diffID string) {
	t.Helper()
	writeDockerSaveLayers(t, path, [][]byte{layer}, []string{diffID})
}

// writeDockerSaveLayers writes a docker save archive of one image of the plain tar layers, lowest
// first, whose diff ids are diffIDs.
func writeDockerSaveLayers(t *testing.T, path string, layers [][]byte, diffIDs []string) {
	t.Helper()
	type member struct {
		name string
		body []byte
	}
	var members []member
	var ids, names []string
	for i, l := range layers {
		dir := fmt.Sprintf("%064x", i+0xab)
		members = append(members, member{dir + "/VERSION", []byte("1.0")}, member{dir + "/layer.tar", l})
		ids = append(ids, fmt.Sprintf(`"sha256:%s"`, diffIDs[i]))
		names = append(names, fmt.Sprintf("%q", dir+"/layer.tar"))
	}
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]}}`, strings.Join(ids, ",")))
	cfgName := sha(cfg) + ".json"
	man := []byte(fmt.Sprintf(`[{"Config":%q,"RepoTags":["hostos/test:1"],"Layers":[%s]}]`, cfgName, strings.Join(names, ",")))
	members = append(members, member{cfgName, cfg}, member{"manifest.json", man}, member{"repositories", []byte("{}")})
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: m.name, Mode: 0o644, Size: int64(len(m.body))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// The one layer of an OCI layout (plain, gzip, zstd) or of a docker save archive is staged as the same
// tar archive is staged on its own, whiteouts left out, with the progress of the layer's bytes; a layer
// whose bytes do not have its digest, or a blob of another size than its manifest says, fails.
func TestStageOneLayerImages(t *testing.T) {
	d := t.TempDir()
	entries := streamEntries()
	plain := filepath.Join(d, "r.tar")
	writeTar(t, plain, entries)
	st, err := Stage(context.Background(), plain, filepath.Join(d, "plain"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want, wantFixups := stagedState(t, st)

	// The layer: the same entries and whiteouts, which hide nothing in a lowest layer.
	withWhiteouts := append([]entry{reg("etc/.wh.gone", ""), reg("usr/.wh..wh..opq", "")}, entries...)
	layerPath := filepath.Join(d, "layer.tar")
	writeTar(t, layerPath, withWhiteouts)
	raw, err := os.ReadFile(layerPath)
	if err != nil {
		t.Fatal(err)
	}
	// A layer written without the end-of-archive marker, which ends with the docker member holding it.
	unterminated := raw[:bytes.LastIndex(raw, []byte("last"))+512]

	gz, zs := gzipZstd(t, raw)
	tampered := bytes.Clone(raw)
	i := bytes.Index(tampered, []byte("mine mine"))
	tampered[i] = 'M' // a body byte: the tar stays well formed, the digest does not

	type source struct {
		name string
		make func(dir string) string
		size int64  // the progress total, 0 for none checked
		fail string // the error staging must fail with
	}
	oci := func(blob []byte, mt string) func(string) string {
		return func(dir string) string {
			p := filepath.Join(dir, "oci")
			writeOCI(t, p, raw, blob, mt)
			return p
		}
	}
	docker := func(layer []byte, diffID string) func(string) string {
		return func(dir string) string {
			p := filepath.Join(dir, "docker.tar")
			writeDockerSave(t, p, layer, diffID)
			return p
		}
	}
	sources := []source{
		{"oci-plain", oci(raw, "application/vnd.oci.image.layer.v1.tar"), int64(len(raw)), ""},
		{"oci-gzip", oci(gz, "application/vnd.oci.image.layer.v1.tar+gzip"), int64(len(gz)), ""},
		{"oci-zstd", oci(zs, "application/vnd.oci.image.layer.v1.tar+zstd"), int64(len(zs)), ""},
		{"docker-save", docker(raw, sha(raw)), int64(len(raw)), ""},
		{"docker-save-unterminated", docker(unterminated, sha(unterminated)), int64(len(unterminated)), ""},
		{"docker-save-tampered", docker(tampered, sha(raw)), 0, "hash to sha256:" + sha(tampered)},
		{"oci-tampered", func(dir string) string {
			p := oci(raw, "application/vnd.oci.image.layer.v1.tar")(dir)
			if err := os.WriteFile(filepath.Join(p, "blobs", "sha256", sha(raw)), tampered, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, 0, "hash to sha256:" + sha(tampered)},
		{"oci-fifo", func(dir string) string {
			p := oci(raw, "application/vnd.oci.image.layer.v1.tar")(dir)
			blob := filepath.Join(p, "blobs", "sha256", sha(raw))
			os.Remove(blob)
			if err := syscall.Mkfifo(blob, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, 0, "is no regular file"},
		{"oci-short", func(dir string) string {
			p := oci(raw, "application/vnd.oci.image.layer.v1.tar")(dir)
			if err := os.Truncate(filepath.Join(p, "blobs", "sha256", sha(raw)), int64(len(raw)-512)); err != nil {
				t.Fatal(err)
			}
			return p
		}, 0, fmt.Sprintf("holds %d bytes, its manifest says %d", len(raw)-512, len(raw))},
	}
	for _, s := range sources {
		t.Run(s.name, func(t *testing.T) {
			dd := t.TempDir()
			src := s.make(dd)
			var done, total int64
			st, err := Stage(context.Background(), src, filepath.Join(dd, "stage"), func(d, t int64) { done, total = d, t })
			if s.fail != "" {
				if err == nil || !strings.Contains(err.Error(), s.fail) {
					t.Fatalf("error %v, want one containing %q", err, s.fail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sameStaged(t, st, want, wantFixups)

			// Open reads the same layer, whiteout entries and all.
			kind, err := Detect(src)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := Open(src, kind)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			tr := tar.NewReader(rc)
			var names []string
			for {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, h.Name)
			}
			if len(names) != len(withWhiteouts) {
				t.Fatalf("Open: %d entries, want the layer's %d", len(names), len(withWhiteouts))
			}
			for i, e := range withWhiteouts {
				if names[i] != e.hdr.Name {
					t.Errorf("Open: entry %d is %q, want %q", i, names[i], e.hdr.Name)
				}
			}
			if done != s.size || total != s.size {
				t.Errorf("progress %d of %d, want %d of %d", done, total, s.size, s.size)
			}
		})
	}
}

// tarOf is the plain tar archive of entries.
func tarOf(t *testing.T, entries []entry) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "l.tar")
	writeTar(t, p, entries)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dirEntry(name string, mode int64, uid int) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: uid}}
}

// layeredEntries are three layers that replace, white out and make opaque what the ones below staged:
// files and directories replaced by each other, metadata changed, whited-out files and directories,
// opaque directories whose marker comes after and before the layer's own entries, hard links.
func layeredEntries() [][]entry {
	owned := reg("etc/replaced", "new")
	owned.hdr.Mode, owned.hdr.Uid, owned.hdr.Gid = 0o600, 1000, 1000
	return [][]entry{{
		dirEntry("./", 0o755, 0),
		dirEntry("etc/", 0o755, 0), reg("etc/keep", "k"), reg("etc/gone", "g"), reg("etc/replaced", "old"),
		dirEntry("usr/", 0o755, 0), dirEntry("usr/lib/", 0o755, 0), reg("usr/lib/libx", "x"), reg("usr/lib/liby", "y"),
		reg("usr/bin-x", "bin"), {hdr: tar.Header{Typeflag: tar.TypeLink, Name: "usr/bin-y", Linkname: "usr/bin-x"}},
		dirEntry("a/", 0o755, 0), dirEntry("a/b/", 0o755, 0), reg("a/b/old", "o"),
		dirEntry("opq/", 0o755, 0), reg("opq/low", "l"), dirEntry("opq/sub/", 0o755, 0), reg("opq/sub/deep", "d"),
		dirEntry("dirfile/", 0o755, 0), reg("dirfile/inner", "i"), reg("filedir", "f"), reg("toplevel", "t"),
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/link", Linkname: "keep"}},
	}, {
		reg("etc/.wh.gone", ""), owned, reg("etc/added", "added-body"),
		dirEntry("opq/", 0o750, 0), reg("opq/early", "e"), dirEntry("opq/sub/", 0o700, 0),
		reg("opq/.wh..wh..opq", ""), reg("opq/new", "n"),
		dirEntry("a/", 0o700, 1000), reg("a/b/new", "new"),
		reg("dirfile", "now a file"), dirEntry("filedir/", 0o755, 0), reg("filedir/x", "x"),
		reg(".wh.toplevel", ""), reg("etc/.wh.link", ""),
	}, {
		dirEntry("usr/lib/", 0o755, 0), reg("usr/lib/.wh..wh..opq", ""), reg("usr/lib/libz", "z"),
		reg("opq/.wh.new", ""), dirEntry("opq/sub2/", 0o755, 0), reg("opq/sub2/f", "f"),
		reg(".wh.a", ""), reg("usr/bin-x", "bin2"),
	}}
}

// The layers of an image, read each from its region and applied in order, stage what
// go-containerregistry's flattening of the same image stages, path for path and fixup for fixup, from
// an OCI layout (plain, gzip and zstd layers mixed) and from a docker save archive; a layer whose bytes
// do not have its digest fails.
func TestStageLayeredImages(t *testing.T) {
	d := t.TempDir()
	var raws [][]byte
	var layers []v1.Layer
	for _, es := range layeredEntries() {
		raw := tarOf(t, es)
		raws = append(raws, raw)
		layers = append(layers, static.NewLayer(raw, types.OCIUncompressedLayer))
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	flat, err := io.ReadAll(mutate.Extract(img))
	if err != nil {
		t.Fatal(err)
	}
	flatPath := filepath.Join(d, "flat.tar")
	if err := os.WriteFile(flatPath, flat, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := Stage(context.Background(), flatPath, filepath.Join(d, "flat"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want, wantFixups := stagedState(t, st)
	// One difference, where the layers are applied as docker applies them: the third layer replaces
	// usr/bin-x, whose hard link usr/bin-y from the first keeps the old inode (as on an overlay mount).
	// The flattening writes the link to the new file instead.
	if want["usr/bin-y"] != "-rw-r--r-- bin2" {
		t.Fatalf("the flattening's usr/bin-y is %q", want["usr/bin-y"])
	}
	want["usr/bin-y"] = "-rw-r--r-- bin"
	for _, kept := range []string{"opq/early", "opq/sub", "usr/lib/libz", "etc/added"} {
		if _, ok := want[kept]; !ok {
			t.Fatalf("the flattening dropped %s: the layers do not test what they should", kept)
		}
	}
	for _, gone := range []string{"etc/gone", "toplevel", "a", "opq/low", "opq/sub/deep", "opq/new", "usr/lib/libx", "etc/link"} {
		if _, ok := want[gone]; ok {
			t.Fatalf("the flattening kept %s: the layers do not test what they should", gone)
		}
	}

	gz, _ := gzipZstd(t, raws[0])
	_, zs := gzipZstd(t, raws[2])
	oci := filepath.Join(d, "oci")
	writeOCILayers(t, oci, []ociLayer{
		{raws[0], gz, "application/vnd.oci.image.layer.v1.tar+gzip"},
		{raws[1], raws[1], "application/vnd.oci.image.layer.v1.tar"},
		{raws[2], zs, "application/vnd.oci.image.layer.v1.tar+zstd"},
	})
	docker := filepath.Join(d, "docker.tar")
	writeDockerSaveLayers(t, docker, raws, []string{sha(raws[0]), sha(raws[1]), sha(raws[2])})
	for _, src := range []string{oci, docker} {
		t.Run(filepath.Base(src), func(t *testing.T) {
			var done, total int64
			st, err := Stage(context.Background(), src, filepath.Join(t.TempDir(), "stage"), func(d, t int64) { done, total = d, t })
			if err != nil {
				t.Fatal(err)
			}
			sameStaged(t, st, want, wantFixups)
			if done != total || total == 0 {
				t.Errorf("progress %d of %d", done, total)
			}
		})
	}

	// A whiteout naming its own directory or the one above is refused, whatever it would hide.
	for _, name := range []string{"etc/.wh...", "etc/.wh..", "etc/.wh."} {
		hostile := tarOf(t, []entry{reg(name, "")})
		p := filepath.Join(d, "hostile.tar")
		writeDockerSaveLayers(t, p, [][]byte{raws[0], hostile}, []string{sha(raws[0]), sha(hostile)})
		stage := filepath.Join(d, "hostile")
		if _, err := Stage(context.Background(), p, stage, nil); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("whiteout %q: error %v, want ErrUnsafePath", name, err)
		}
		os.RemoveAll(stage)
	}

	// The middle layer with a changed byte in a body: its digest fails.
	tampered := bytes.Clone(raws[1])
	tampered[bytes.Index(tampered, []byte("added-body"))] = 'A'
	bad := filepath.Join(d, "bad.tar")
	writeDockerSaveLayers(t, bad, [][]byte{raws[0], tampered, raws[2]}, []string{sha(raws[0]), sha(raws[1]), sha(raws[2])})
	if _, err := Stage(context.Background(), bad, filepath.Join(d, "bad"), nil); err == nil || !strings.Contains(err.Error(), "hash to sha256:"+sha(tampered)) {
		t.Fatalf("tampered middle layer: error %v", err)
	}
}

// FuzzStageLayers stages two layers of entries the fuzzer picks from a few names (directories, files,
// symlinks, hard links, whiteouts and opaque markers, the hostile ones among them) from a docker save
// archive. Staging may fail, but never panics, never writes outside its directory, and leaves a tree
// in which every path it counted is there.
func FuzzStageLayers(f *testing.F) {
	f.Add([]byte{0, 0, 1, 1, 2, 3, 255, 3, 2, 4, 0, 5, 1})
	f.Add([]byte{0, 1, 1, 2, 255, 6, 0, 7, 1, 3, 0, 1, 2})
	names := []string{"a", "a/b", "a/b/c", "d", "d/e", "f", "a/.wh.b", "a/.wh..wh..opq", ".wh.a", "d/.wh..", "a/.wh...", "../x", "a/../../y"}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 64 {
			return
		}
		var layers [][]entry
		var cur []entry
		for i := 0; i+1 < len(ops); i += 2 {
			if ops[i] == 255 {
				layers, cur = append(layers, cur), nil
				i--
				continue
			}
			name := names[int(ops[i+1])%len(names)]
			switch ops[i] % 5 {
			case 0:
				cur = append(cur, dirEntry(name+"/", 0o755, 0))
			case 1:
				cur = append(cur, reg(name, name))
			case 2:
				cur = append(cur, entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: "../../etc"}})
			case 3:
				cur = append(cur, entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: names[int(ops[i])%len(names)]}})
			case 4:
				cur = append(cur, reg(name+"/.wh..wh..opq", ""))
			}
		}
		layers = append(layers, cur)
		var raws [][]byte
		var ids []string
		for _, l := range layers {
			raw := tarOf(t, l)
			raws, ids = append(raws, raw), append(ids, sha(raw))
		}
		d := t.TempDir()
		src := filepath.Join(d, "docker.tar")
		writeDockerSaveLayers(t, src, raws, ids)
		outer := filepath.Join(d, "outer")
		if err := os.Mkdir(outer, 0o755); err != nil {
			t.Fatal(err)
		}
		st, err := Stage(context.Background(), src, filepath.Join(outer, "stage"), nil)
		if got, _ := os.ReadDir(outer); len(got) != 1 || got[0].Name() != "stage" {
			t.Fatalf("staging wrote beside its directory: %v", got)
		}
		if list, _ := os.ReadDir(d); len(list) != 2 {
			t.Fatalf("staging wrote outside its directory: %v", list)
		}
		if err != nil {
			return
		}
		n := 0
		if err := filepath.Walk(st.Dir, func(string, os.FileInfo, error) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n > st.Entries {
			t.Errorf("%d paths on disk, %d counted", n, st.Entries)
		}
	})
}
