package enginestore

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"

	"github.com/hostos/hostos/rootfs/tree"
)

// stage returns an empty staged tree.
func stage(t *testing.T) *tree.Staged {
	t.Helper()
	s, err := tree.Scan(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readStore(t *testing.T, dir, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, DefaultDataRoot, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func diffIDOf(t *testing.T, tarPath string) v1.Hash {
	t.Helper()
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// reassemble rebuilds a layer tar from the store's tar-split record and the layer directory, as the
// engine does for docker save and for deltas.
func reassemble(t *testing.T, dir string, chain v1.Hash, cacheID string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, DefaultDataRoot, layerDir, chain.Hex, tarSplitFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	diff := filepath.Join(dir, DefaultDataRoot, overlayDir, cacheID, "diff")
	rc := asm.NewOutputTarStream(storage.NewPathFileGetter(diff), storage.NewJSONUnpacker(zr))
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reassemble layer %s: %v", chain, err)
	}
	return b
}

func TestAddWritesTheStore(t *testing.T) {
	fx := newFixture(t, []byte("#!/bin/true\n"))
	root := stage(t)
	res, err := Add(t.Context(), root, []Image{fx.storeImage(t, "a"), fx.storeImage(t, "b")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 2 {
		t.Fatalf("%d images written, want 2", len(res.Images))
	}
	for i, name := range []string{"a", "b"} {
		w := res.Images[i]
		img := fx.image(t, name)
		cfgName, _ := img.ConfigName()
		if w.ID != cfgName || !w.New {
			t.Errorf("image %s: id %s new %v, want %s new", name, w.ID, w.New, cfgName)
		}
		if got := readStore(t, root.Dir, contentDir+"/"+w.ID.Hex); got != string(mustRaw(t, img)) {
			t.Errorf("image %s: imagedb content differs from the config bytes", name)
		}
		var diffIDs []v1.Hash
		var sum int64
		for j, l := range fx.images[name] {
			diffIDs = append(diffIDs, diffIDOf(t, fx.tars[l]))
			got := w.Layers[j]
			if got.DiffID != diffIDs[j] || got.ChainID != ChainID(diffIDs) || got.CacheID != CacheID(got.ChainID) {
				t.Errorf("image %s layer %s: %+v", name, l, got)
			}
			// Layers shared with image a are written once, by a.
			if want := i == 0 || j == 2; got.Written != want {
				t.Errorf("image %s layer %s: written %v, want %v", name, l, got.Written, want)
			}
			ldir := layerDir + "/" + got.ChainID.Hex + "/"
			if d := readStore(t, root.Dir, ldir+"diff"); d != diffIDs[j].String() {
				t.Errorf("layer %s diff = %q", l, d)
			}
			if c := readStore(t, root.Dir, ldir+"cache-id"); c != got.CacheID {
				t.Errorf("layer %s cache-id = %q", l, c)
			}
			if s := readStore(t, root.Dir, ldir+"size"); s != fmt.Sprint(got.Size) {
				t.Errorf("layer %s size = %q, result %d", l, s, got.Size)
			}
			_, perr := os.Stat(filepath.Join(root.Dir, DefaultDataRoot, ldir+"parent"))
			if j == 0 && perr == nil {
				t.Errorf("base layer %s has a parent file", l)
			}
			if j > 0 {
				if p := readStore(t, root.Dir, ldir+"parent"); p != w.Layers[j-1].ChainID.String() {
					t.Errorf("layer %s parent = %q", l, p)
				}
				// lower lists the lower layers uppermost first.
				var want []string
				for k := j - 1; k >= 0; k-- {
					want = append(want, "l/"+LinkID(w.Layers[k].ChainID))
				}
				if got := readStore(t, root.Dir, overlayDir+"/"+got.CacheID+"/lower"); got != strings.Join(want, ":") {
					t.Errorf("layer %s lower = %q, want %q", l, got, strings.Join(want, ":"))
				}
			}
			if link := readStore(t, root.Dir, overlayDir+"/"+got.CacheID+"/link"); link != LinkID(got.ChainID) {
				t.Errorf("layer %s link = %q", l, link)
			}
			target, err := os.Readlink(filepath.Join(root.Dir, DefaultDataRoot, linkDir, LinkID(got.ChainID)))
			if err != nil || target != "../"+got.CacheID+"/diff" {
				t.Errorf("layer %s l/ link = %q, %v", l, target, err)
			}
			in, err := os.ReadFile(fx.tars[l])
			if err != nil {
				t.Fatal(err)
			}
			if out := reassemble(t, root.Dir, got.ChainID, got.CacheID); !bytes.Equal(in, out) {
				t.Errorf("layer %s: tar-split reassembly differs from the input tar (%d vs %d bytes)", l, len(out), len(in))
			}
			sum += got.Size
		}
		if w.Size != sum {
			t.Errorf("image %s size %d, want %d", name, w.Size, sum)
		}
	}
	// The base layer's size as the engine counts it: regular files once per inode, symlink targets.
	base := res.Images[0].Layers[0]
	var want int64
	for _, e := range fixtureLayers([]byte("#!/bin/true\n"))["base"] {
		switch e.typ {
		case '0':
			want += int64(len(e.data))
		case '2':
			want += int64(len(e.link))
		}
	}
	if base.Size != want {
		t.Errorf("base layer size %d, want %d", base.Size, want)
	}

	var repos repositories
	if err := json.Unmarshal([]byte(readStore(t, root.Dir, reposFile)), &repos); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a", "b"} {
		d, _ := fx.image(t, name).Digest()
		want := map[string]string{
			"hostos-test/" + name + ":v1":            res.Images[i].ID.String(),
			"hostos-test/" + name + "@" + d.String(): res.Images[i].ID.String(),
		}
		for k, v := range want {
			if repos.Repositories["hostos-test/"+name][k] != v {
				t.Errorf("repositories.json %s = %q, want %q", k, repos.Repositories["hostos-test/"+name][k], v)
			}
		}
		if _, ok := repos.Repositories["registry.example/hostos-test/"+name]["registry.example/hostos-test/"+name+"@"+d.String()]; !ok {
			t.Errorf("repositories.json lacks the source repository's digest reference of %s", name)
		}
	}
	var meta []v2Metadata
	topA := res.Images[0].Layers[2]
	if err := json.Unmarshal([]byte(readStore(t, root.Dir, v2MetaByDiff+"/"+topA.DiffID.Hex)), &meta); err != nil {
		t.Fatal(err)
	}
	if len(meta) != 1 || meta[0].Digest != topA.Digest.String() || meta[0].SourceRepository != "registry.example/hostos-test/a" {
		t.Errorf("v2metadata of the top layer of a: %+v", meta)
	}
	if got := readStore(t, root.Dir, diffIDByBlob+"/"+topA.Digest.Hex); got != topA.DiffID.String() {
		t.Errorf("diffid-by-digest of the top layer of a: %q", got)
	}

	// Whiteouts, the opaque directory, owners and modes the builder cannot apply are fixups.
	baseDiff := "/docker/overlay2/" + base.CacheID + "/diff"
	midDiff := "/docker/overlay2/" + res.Images[0].Layers[1].CacheID + "/diff"
	wantFixups := []tree.Fixup{
		{Op: tree.OpMknod, Path: midDiff + "/etc/removed", Mode: 0o020000},
		{Op: tree.OpMode, Path: midDiff + "/etc/removed", Mode: 0o020000},
		{Op: tree.OpXattr, Path: midDiff + "/data/old", Name: "trusted.overlay.opaque", Value: []byte("y")},
		{Op: tree.OpXattr, Path: baseDiff + "/bin/ping", Name: "security.capability", Value: []byte(capNetRaw())},
		{Op: tree.OpOwner, Path: baseDiff + "/etc/secret", UID: 1000, GID: 1001},
		{Op: tree.OpMode, Path: baseDiff + "/data/locked", Mode: 0o040500},
		{Op: tree.OpMtime, Path: midDiff + "/etc", Time: fixtureTime},
	}
	for _, w := range wantFixups {
		found := false
		for _, f := range res.Staged.Fixups {
			if f.Op == w.Op && f.Path == w.Path && f.Mode == w.Mode && f.Name == w.Name && bytes.Equal(f.Value, w.Value) &&
				f.UID == w.UID && f.GID == w.GID && f.Time.Equal(w.Time) {
				found = true
			}
		}
		if !found {
			t.Errorf("no fixup %+v", w)
		}
	}
	// The hard link is a real one in the staged layer.
	a, err1 := os.Stat(filepath.Join(root.Dir, filepath.FromSlash(baseDiff), "etc/hello"))
	b, err2 := os.Stat(filepath.Join(root.Dir, filepath.FromSlash(baseDiff), "etc/hard"))
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		t.Errorf("etc/hard is not a hard link of etc/hello: %v %v", err1, err2)
	}
	if res.Staged.Entries <= root.Entries || res.Staged.Bytes <= root.Bytes {
		t.Errorf("recounted tree: %d entries %d bytes", res.Staged.Entries, res.Staged.Bytes)
	}
}

func mustRaw(t *testing.T, img v1.Image) []byte {
	t.Helper()
	b, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// treeDigest describes every path of a directory: type, mode, size, content hash or link target.
func treeDigest(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil // the caller's directory: its mtime is when the store was written into it
		}
		line := fmt.Sprintf("%s %v %d %d", rel, fi.Mode(), fi.Size(), fi.ModTime().Unix())
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += " " + hex.EncodeToString(sum[:])
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestAddIsDeterministicAndMerges(t *testing.T) {
	fx := newFixture(t, []byte("#!/bin/true\n"))
	// Both images at once, and a then b into a store that already holds a.
	one := stage(t)
	if _, err := Add(t.Context(), one, []Image{fx.storeImage(t, "a"), fx.storeImage(t, "b")}); err != nil {
		t.Fatal(err)
	}
	two := stage(t)
	first, err := Add(t.Context(), two, []Image{fx.storeImage(t, "a")})
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	second, err := Add(t.Context(), first.Staged, []Image{fx.storeImage(t, "b")}, WithLog(func(m string) { logs = append(logs, m) }))
	if err != nil {
		t.Fatal(err)
	}
	if w := second.Images[0].Layers; w[0].Written || w[1].Written || !w[2].Written {
		t.Errorf("merge wrote layers %v %v %v, want only the top one", w[0].Written, w[1].Written, w[2].Written)
	}
	if len(logs) != 2 {
		t.Errorf("log of the merge: %q, want the two shared layers", logs)
	}
	var repos repositories
	if err := json.Unmarshal([]byte(readStore(t, two.Dir, reposFile)), &repos); err != nil {
		t.Fatal(err)
	}
	if repos.Repositories["hostos-test/a"]["hostos-test/a:v1"] != first.Images[0].ID.String() {
		t.Errorf("merge lost image a: %v", repos.Repositories)
	}
	if a, b := treeDigest(t, one.Dir), treeDigest(t, two.Dir); strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("the same images give different stores:\n%s\n---\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	// The fixups of the merged store are those of the store written at once, less its tree's root.
	again, err := Add(t.Context(), stage(t), []Image{fx.storeImage(t, "a"), fx.storeImage(t, "b")})
	if err != nil {
		t.Fatal(err)
	}
	fix := func(s *tree.Staged, dir string) string {
		var b strings.Builder
		for _, f := range s.Fixups {
			if f.Path != "/" {
				fmt.Fprintf(&b, "%v %s %d:%d %o %s %x %d\n", f.Op, f.Path, f.UID, f.GID, f.Mode, f.Name, f.Value, f.Time.Unix())
			}
		}
		return b.String()
	}
	if a, b := fix(second.Staged, two.Dir), fix(again.Staged, ""); a != b {
		t.Errorf("fixups differ between a merged store and one written at once:\n%s---\n%s", a, b)
	}
}

// wrongConfig serves an image with a config whose diffIDs do not match its layers.
type wrongConfig struct {
	v1.Image
	raw []byte
}

func (w wrongConfig) RawConfigFile() ([]byte, error) { return w.raw, nil }
func (w wrongConfig) ConfigName() (v1.Hash, error) {
	sum := sha256.Sum256(w.raw)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, nil
}

func TestAddRefusesBadInput(t *testing.T) {
	fx := newFixture(t, []byte("#!/bin/true\n"))
	good := fx.storeImage(t, "a")

	raw := mustRaw(t, good.Image)
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	ids := cfg["rootfs"].(map[string]any)["diff_ids"].([]any)
	ids[2] = "sha256:" + strings.Repeat("ab", 32)
	badRaw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	badDiffID := good
	badDiffID.Image = wrongConfig{Image: good.Image, raw: badRaw}

	// A copy of the layout with one byte of the top layer's blob changed.
	corrupt := filepath.Join(t.TempDir(), "oci")
	if err := os.CopyFS(corrupt, os.DirFS(fx.layout)); err != nil {
		t.Fatal(err)
	}
	layers, _ := good.Image.Layers()
	top, _ := layers[2].Digest()
	blob := filepath.Join(corrupt, "blobs", "sha256", top.Hex)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	corruptFx := *fx
	corruptFx.layout = corrupt
	badBlob := corruptFx.storeImage(t, "a")

	tests := []struct {
		name    string
		img     Image
		opts    []Option
		want    string
		digest  bool
		written bool // earlier layers of the image are complete in the staging directory
	}{
		{name: "diffID", img: badDiffID, want: "not the config's diffID", digest: true, written: true},
		{name: "blob", img: badBlob, want: "layer 3", digest: true, written: true},
		{name: "tag", img: Image{Image: good.Image, Tags: []string{"Bad Tag"}}, want: `image tag "Bad Tag"`},
		{name: "digest tag", img: Image{Image: good.Image, Tags: []string{"a@sha256:" + strings.Repeat("0", 64)}}, want: "a digest reference"},
		{name: "digest alone", img: Image{Image: good.Image, ManifestDigest: top}, want: "no tag or source repository"},
		{name: "data root", img: good, opts: []Option{WithDataRoot("../x")}, want: "not a path inside the tree"},
	}
	before := treeDigest(t, fx.layout)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := stage(t)
			_, err := Add(t.Context(), root, []Image{tt.img}, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line with %q", err, tt.want)
			}
			if errors.Is(err, ErrDigestMismatch) != tt.digest {
				t.Errorf("errors.Is(ErrDigestMismatch) = %v", !tt.digest)
			}
			// Nothing of the failing layer, no image and no reference entered the store.
			if _, err := os.Stat(filepath.Join(root.Dir, DefaultDataRoot, reposFile)); err == nil {
				t.Error("repositories.json written for a refused image")
			}
			if configs, _ := os.ReadDir(filepath.Join(root.Dir, DefaultDataRoot, contentDir)); len(configs) > 0 {
				t.Error("image config written for a refused image")
			}
			layersIn, _ := os.ReadDir(filepath.Join(root.Dir, DefaultDataRoot, layerDir))
			dirsIn, _ := os.ReadDir(filepath.Join(root.Dir, DefaultDataRoot, overlayDir))
			tmpIn, _ := os.ReadDir(filepath.Join(root.Dir, DefaultDataRoot, layerTmp))
			want := 0
			if tt.written {
				want = 2
			}
			if len(layersIn) != want || len(dirsIn) != want+boolInt(tt.written) || len(tmpIn) != 0 {
				t.Errorf("store holds %d layers, %d overlay2 entries, %d tmp entries; want %d complete layers",
					len(layersIn), len(dirsIn), len(tmpIn), want)
			}
		})
	}
	if after := treeDigest(t, fx.layout); strings.Join(before, "\n") != strings.Join(after, "\n") {
		t.Error("the input layout changed")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
