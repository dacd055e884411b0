//go:build linux

package enginestore

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/tree"
	"github.com/hostos/hostos/tests/enginetest"
	"github.com/hostos/hostos/tests/testtool"
)

// checkerSource is a static program the containers run: it prints what it finds at each path.
const checkerSource = `package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"syscall"
)

type fact struct {
	Path     string
	Exists   bool
	Mode     uint32
	UID, GID uint32
	Ino      uint64
	Nlink    uint64
	SHA      string
	Target   string
	Cap      string
	Entries  []string
}

func main() {
	var out []fact
	for _, p := range os.Args[1:] {
		f := fact{Path: p}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) == nil {
			f.Exists, f.Mode, f.UID, f.GID, f.Ino, f.Nlink = true, st.Mode, st.Uid, st.Gid, st.Ino, uint64(st.Nlink)
			switch st.Mode & syscall.S_IFMT {
			case syscall.S_IFREG:
				b, _ := os.ReadFile(p)
				sum := sha256.Sum256(b)
				f.SHA = hex.EncodeToString(sum[:])
				buf := make([]byte, 256)
				if n, err := syscall.Getxattr(p, "security.capability", buf); err == nil {
					f.Cap = hex.EncodeToString(buf[:n])
				}
			case syscall.S_IFLNK:
				f.Target, _ = os.Readlink(p)
			case syscall.S_IFDIR:
				es, _ := os.ReadDir(p)
				f.Entries = []string{}
				for _, e := range es {
					f.Entries = append(f.Entries, e.Name())
				}
			}
		}
		out = append(out, f)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
`

type fact struct {
	Path     string
	Exists   bool
	Mode     uint32
	UID, GID uint32
	Ino      uint64
	Nlink    uint64
	SHA      string
	Target   string
	Cap      string
	Entries  []string
}

// buildChecker compiles checkerSource into a static binary.
func buildChecker(t *testing.T) []byte {
	t.Helper()
	goTool := testtool.Need(t, "go")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(checkerSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module checker\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", "check", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the checker: %v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "check"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeImage makes an ext4 filesystem from the staged tree at offset off of a new image file, through
// the same path as the rest of hostos, and checks it with e2fsck.
func writeImage(t *testing.T, staged *tree.Staged, off int64) string {
	t.Helper()
	o := ext4.Options{Label: "resin-data"}
	size := ext4.Estimate(staged, o) + 64<<20
	img := filepath.Join(t.TempDir(), "data.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(off + size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := ext4.Make(t.Context(), img, off, size, o, staged); err != nil {
		t.Fatal(err)
	}
	if err := ext4.Check(t.Context(), img, off); err != nil {
		t.Fatalf("the written filesystem: %v", err)
	}
	return img
}

type imageRow struct{ Repository, Tag, Digest, ID string }

type inspected struct {
	ID          string `json:"Id"`
	RepoTags    []string
	RepoDigests []string
	Size        int64
	RootFS      struct{ Layers []string }
}

// checkImage compares what the engine lists and inspects for a fixture image with its config and
// manifest, and what Add reported.
func checkImage(t *testing.T, e *enginetest.Engine, fx *fixture, name string, w *Written) {
	t.Helper()
	img := fx.image(t, name)
	id, _ := img.ConfigName()
	manifest, _ := img.Digest()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	repo := "hostos-test/" + name
	found := false
	for _, line := range strings.Split(strings.TrimSpace(e.Must("images", "--digests", "--format", "{{json .}}")), "\n") {
		var r imageRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("docker images: %v: %s", err, line)
		}
		if r.Repository == repo && r.Tag == "v1" {
			found = true
			if r.Digest != manifest.String() || !strings.HasPrefix(id.Hex, r.ID) {
				t.Errorf("docker images shows %s:v1 as %+v, want digest %s and id %s", repo, r, manifest, id)
			}
		}
	}
	if !found {
		t.Errorf("docker images does not list %s:v1", repo)
	}
	var got []inspected
	if err := json.Unmarshal([]byte(e.Must("image", "inspect", repo+":v1")), &got); err != nil || len(got) != 1 {
		t.Fatalf("docker image inspect %s: %v", repo, err)
	}
	var diffIDs []string
	for _, d := range cfg.RootFS.DiffIDs {
		diffIDs = append(diffIDs, d.String())
	}
	if got[0].ID != id.String() || strings.Join(got[0].RootFS.Layers, " ") != strings.Join(diffIDs, " ") {
		t.Errorf("docker image inspect %s: id %s layers %v, want %s %v", repo, got[0].ID, got[0].RootFS.Layers, id, diffIDs)
	}
	if w != nil && got[0].Size != w.Size {
		t.Errorf("docker image inspect %s: size %d, Add reported %d", repo, got[0].Size, w.Size)
	}
	if digests := strings.Join(got[0].RepoDigests, " "); !strings.Contains(digests, repo+"@"+manifest.String()) {
		t.Errorf("docker image inspect %s: repo digests %s lack %s", repo, digests, manifest)
	}
}

// checkRun runs the fixture image's checker and compares what the container sees with the layers.
func checkRun(t *testing.T, e *enginetest.Engine, fx *fixture, name string, checker []byte) {
	t.Helper()
	paths := []string{"/bin/check", "/etc/hello", "/etc/hard", "/etc/link", "/etc/removed", "/etc/secret", "/bin/ping",
		"/data/old", "/data/locked", "/data/locked/inside", "/app/a.txt", "/app/b.txt", "/app/c.txt"}
	out := e.Must(append([]string{"run", "--rm", "--network", "none", "hostos-test/" + name + ":v1"}, paths...)...)
	var facts []fact
	if err := json.Unmarshal([]byte(out), &facts); err != nil || len(facts) != len(paths) {
		t.Fatalf("checker in %s: %v: %s", name, err, out)
	}
	by := map[string]fact{}
	for _, f := range facts {
		by[f.Path] = f
	}
	sha := func(b []byte) string { return sha256Hex(b) }
	hello := by["/etc/hello"]
	top := map[string]bool{}
	for _, l := range fx.images[name] {
		for _, e := range fixtureLayers(checker)[l] {
			if strings.HasPrefix(e.name, "app/") && e.typ == tar.TypeReg {
				top["/"+e.name] = true
				if got := by["/"+e.name]; !got.Exists || got.SHA != sha(e.data) || got.Mode&0o7777 != uint32(e.mode) {
					t.Errorf("%s in %s: %+v, want content of the layer and mode %o", e.name, name, got, e.mode)
				}
			}
		}
	}
	for _, p := range []string{"/app/a.txt", "/app/b.txt", "/app/c.txt"} {
		if !top[p] && by[p].Exists {
			t.Errorf("%s in %s: from another image", p, name)
		}
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"the checker runs from its own layer", by["/bin/check"].SHA == sha(checker)},
		{"file content", hello.Exists && hello.SHA == sha([]byte("hello from the base layer\n"))},
		{"hard link shares the inode", hello.Nlink == 2 && by["/etc/hard"].Ino == hello.Ino && by["/etc/hard"].SHA == hello.SHA},
		{"symlink", by["/etc/link"].Target == "hello"},
		{"owner and mode", by["/etc/secret"].UID == 1000 && by["/etc/secret"].GID == 1001 && by["/etc/secret"].Mode&0o7777 == 0o600},
		{"capability", by["/bin/ping"].Cap == hex.EncodeToString([]byte(capNetRaw()))},
		{"read-only directory", by["/data/locked"].Mode&0o7777 == 0o500 && by["/data/locked/inside"].Exists},
	}
	if name != "c" {
		checks = append(checks,
			struct {
				what string
				ok   bool
			}{"whiteout", !by["/etc/removed"].Exists},
			struct {
				what string
				ok   bool
			}{"opaque directory", strings.Join(by["/data/old"].Entries, " ") == "new.txt"})
	} else {
		checks = append(checks, struct {
			what string
			ok   bool
		}{"no whiteout without the middle layer", by["/etc/removed"].Exists && len(by["/data/old"].Entries) == 2})
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s in %s: not as in the layers; the container sees %s", c.what, name, out)
		}
	}
}

// checkSave compares the layer tars docker save gives for the image with the input tars.
func checkSave(t *testing.T, e *enginetest.Engine, fx *fixture, name string) {
	t.Helper()
	archive := filepath.Join(t.TempDir(), name+".tar")
	e.Must("save", "-o", archive, "hostos-test/"+name+":v1")
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && (h.Name == "manifest.json" || strings.HasSuffix(h.Name, "layer.tar")) {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
	var m []struct{ Layers []string }
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) != 1 {
		t.Fatalf("docker save %s: manifest: %v", name, err)
	}
	if len(m[0].Layers) != len(fx.images[name]) {
		t.Fatalf("docker save %s: %d layers, want %d", name, len(m[0].Layers), len(fx.images[name]))
	}
	for i, l := range fx.images[name] {
		in, err := os.ReadFile(fx.tars[l])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(files[m[0].Layers[i]], in) {
			t.Errorf("docker save %s: layer %s differs from the input tar (%d vs %d bytes)", name, l, len(files[m[0].Layers[i]]), len(in))
		}
	}
}

func sha256Hex(b []byte) string {
	h := v1Hash(b)
	return h.Hex
}

func v1Hash(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}

// layerRecord reads the layerdb entry and overlay2 directory of a layer, by the engine or by Add,
// without the names that may differ (cache-id and link).
func layerRecord(t *testing.T, dataRoot string, chain v1.Hash) map[string]string {
	t.Helper()
	rec := map[string]string{}
	ldir := filepath.Join(dataRoot, filepath.FromSlash(layerDir), chain.Hex)
	for _, f := range []string{"diff", "size", "parent"} {
		if b, err := os.ReadFile(filepath.Join(ldir, f)); err == nil {
			rec[f] = string(b)
		}
	}
	zf, err := os.Open(filepath.Join(ldir, tarSplitFile))
	if err != nil {
		t.Fatal(err)
	}
	defer zf.Close()
	zr, err := gzip.NewReader(zf)
	if err != nil {
		t.Fatal(err)
	}
	js, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	rec["tar-split JSON"] = string(js)
	cid, err := os.ReadFile(filepath.Join(ldir, "cache-id"))
	if err != nil {
		t.Fatal(err)
	}
	modes := func(where, base string, names ...string) {
		for _, n := range names {
			if fi, err := os.Lstat(filepath.Join(base, n)); err == nil {
				rec[fmt.Sprintf("the mode of %s %s", where, n)] = fi.Mode().String()
			}
		}
	}
	modes("layerdb", ldir, ".", "diff", "size", "parent", "cache-id", tarSplitFile)
	modes("overlay2", filepath.Join(dataRoot, overlayDir, string(cid)), ".", "diff", "link", "lower", "work")
	return rec
}

// TestEngineLoadsStore has a real dockerd (Debian's docker.io, overlay2) start on stores written by Add
// into ext4 images made as hostos makes them: first a store holding image a, into which the engine then
// loads image c itself; then that store, copied as it is, with image b added by Add. The engine must list,
// inspect, run and save every image, and its own record of c must match what Add writes for c.
func TestEngineLoadsStore(t *testing.T) {
	dockerd, client := enginetest.Need(t)
	checker := buildChecker(t)
	fx := newFixture(t, checker)
	const off = 1 << 20

	// 1. A store written by Add alone.
	root := stage(t)
	res, err := Add(t.Context(), root, []Image{fx.storeImage(t, "a")})
	if err != nil {
		t.Fatal(err)
	}
	img := writeImage(t, res.Staged, off)
	mnt := enginetest.Mount(t, img, off)
	e := enginetest.Start(t, dockerd, client, filepath.Join(mnt, DefaultDataRoot))
	checkImage(t, e, fx, "a", &res.Images[0])
	checkRun(t, e, fx, "a", checker)
	checkSave(t, e, fx, "a")

	// The engine loads image c, which shares the base layer, and records its top layer itself.
	archive := filepath.Join(t.TempDir(), "c.tar")
	tag, err := name.NewTag("hostos-test/c:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(archive, tag, fx.image(t, "c")); err != nil {
		t.Fatal(err)
	}
	e.Must("load", "-i", archive)
	checkRun(t, e, fx, "c", checker)
	e.Stop()
	cImg := fx.image(t, "c")
	cCfg, _ := cImg.ConfigFile()
	cTop := ChainID(cCfg.RootFS.DiffIDs)
	engineRec := layerRecord(t, filepath.Join(mnt, DefaultDataRoot), cTop)
	ours := stage(t)
	if _, err := Add(t.Context(), ours, []Image{{Image: cImg, Tags: []string{"hostos-test/c:v1"}}}); err != nil {
		t.Fatal(err)
	}
	ourRec := layerRecord(t, filepath.Join(ours.Dir, DefaultDataRoot), cTop)
	for k, v := range engineRec {
		if ourRec[k] != v {
			t.Errorf("layer %s: the engine wrote %s %q, Add writes %q", cTop, k, v, ourRec[k])
		}
	}
	for k := range ourRec {
		if _, ok := engineRec[k]; !ok {
			t.Errorf("layer %s: Add writes %s, the engine does not", cTop, k)
		}
	}

	// 2. The same store, copied as it is (image a by Add, image c by the engine), with image b added.
	merged := t.TempDir()
	if out, err := exec.Command("cp", "-a", filepath.Join(mnt, DefaultDataRoot), merged).CombinedOutput(); err != nil {
		t.Fatalf("copy the store: %v: %s", err, out)
	}
	enginetest.UnmountUnder(t, mnt)
	if err := ext4.Check(t.Context(), img, off); err != nil {
		t.Errorf("the filesystem after the engine ran: %v", err)
	}
	root2, err := tree.Scan(merged)
	if err != nil {
		t.Fatal(err)
	}
	res2, err := Add(t.Context(), root2, []Image{fx.storeImage(t, "b")})
	if err != nil {
		t.Fatal(err)
	}
	if l := res2.Images[0].Layers; l[0].Written || l[1].Written || !l[2].Written {
		t.Errorf("b's layers written: %v %v %v, want only its top layer", l[0].Written, l[1].Written, l[2].Written)
	}
	img2 := writeImage(t, res2.Staged, off)
	mnt2 := enginetest.Mount(t, img2, off)
	e2 := enginetest.Start(t, dockerd, client, filepath.Join(mnt2, DefaultDataRoot))
	checkImage(t, e2, fx, "a", &res.Images[0])
	checkImage(t, e2, fx, "b", &res2.Images[0])
	checkRun(t, e2, fx, "b", checker)
	checkRun(t, e2, fx, "c", checker)
	checkSave(t, e2, fx, "b")
	checkSave(t, e2, fx, "c")
	e2.Stop()
	enginetest.UnmountUnder(t, mnt2)
	if err := ext4.Check(t.Context(), img2, off); err != nil {
		t.Errorf("the merged filesystem after the engine ran: %v", err)
	}
}
