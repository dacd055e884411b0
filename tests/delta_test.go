package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/hostapp/delta"
	"github.com/hostos/hostos/tests/testtool"
)

// deltaRootMiB is the size of the root filesystems of the delta test, deltaDataMiB what its files hold
// (incompressible, so that the full bundle is about that large).
const (
	deltaRootMiB = 128
	deltaDataMiB = 96
)

// deltaTree writes a root filesystem of deltaDataMiB of pseudo-random files, and usr/lib/os-release.
func deltaTree(t *testing.T, root string) {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{'h', 'o', 's', 't', 'o', 's'})
	for _, d := range []string{"etc", "usr/lib", "usr/bin", "usr/share/data", "var"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	must(t, os.Symlink("../usr/lib/os-release", filepath.Join(root, "etc/os-release")))
	buf := make([]byte, 4<<20)
	for i := range deltaDataMiB / 4 {
		rng.Read(buf)
		must(t, os.WriteFile(filepath.Join(root, "usr/share/data", fmt.Sprintf("blob%02d", i)), buf, 0o644))
	}
	setVersion(t, root, "1.0.0")
}

func setVersion(t *testing.T, root, v string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(root, "usr/lib/os-release"),
		[]byte(fmt.Sprintf("NAME=\"balenaOS\"\nVERSION_ID=\"%s\"\nVERSION=\"%s\"\n", v, v)), 0o644))
}

// fileSum is the sha256 of a file's bytes.
func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	must(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// copyFile copies a (sparse) image.
func copyImage(t *testing.T, src, dst string) {
	t.Helper()
	run(t, "cp", "--sparse=always", src, dst)
}

// slotRange is the byte range of the partition labelled label.
func slotRange(t *testing.T, img, label string) (int64, int64) {
	t.Helper()
	for _, p := range inspectJSON(t, img).Partitions {
		if p.Label == label {
			return p.Start, p.Size
		}
	}
	t.Fatalf("%s: no partition %s", img, label)
	return 0, 0
}

func readRange(t *testing.T, img string, off, size int64) []byte {
	t.Helper()
	f, err := os.Open(img)
	must(t, err)
	defer f.Close()
	b := make([]byte, size)
	_, err = f.ReadAt(b, off)
	must(t, err)
	return b
}

// rewriteDelta writes a copy of the delta bundle src whose delta member's chunk data is changed by edit
// (given the decompressed new chunks), signed with key: well formed and signed, so that only the chunk
// checks can catch it.
func rewriteDelta(t *testing.T, src, dst string, key []byte, edit func([]byte, delta.Index) []byte) {
	t.Helper()
	f, err := os.Open(src)
	must(t, err)
	defer f.Close()
	br, err := bundle.NewReader(f)
	must(t, err)
	m := br.Metadata()
	r, err := br.Rootfs()
	must(t, err)
	member, err := io.ReadAll(r)
	must(t, err)
	if m.Boot != nil {
		t.Fatal("the delta test's bundles have no boot files")
	}
	h, payload, err := delta.ReadHeader(bytes.NewReader(member), int64(len(member)))
	must(t, err)
	zr, err := zstd.NewReader(nil)
	must(t, err)
	raw, err := zr.DecodeAll(member[payload:], nil)
	must(t, err)
	zw, err := zstd.NewWriter(nil)
	must(t, err)
	member = zw.EncodeAll(edit(raw, h.Index), bytes.Clone(member[:payload]))
	sum := sha256.Sum256(member)
	m.Rootfs.Size, m.Rootfs.SHA256 = int64(len(member)), hex.EncodeToString(sum[:])
	k, err := bundle.ParsePrivateKey(key)
	must(t, err)
	var out bytes.Buffer
	must(t, bundle.Write(&out, m, bytes.NewReader(member), nil, k))
	must(t, os.WriteFile(dst, out.Bytes(), 0o644))
}

// TestDeltaUpdate: between versions 1 and 2 of a 128 MiB root filesystem (96 MiB of files) one file
// changes. The signed delta bundle made with --delta-from the version 1 bundle is at most 2 % of the full
// version 2 bundle; hostos update of it, on an image running version 1 in slot B, writes slot A byte for
// byte as the full bundle's update does, e2fsck clean. A corrupted chunk, a damaged delta, a wrong base
// (the running slot is not version 1), a missing chunk, a truncated delta and an unsigned delta each fail
// with one line, with the image unchanged (slot A's head, the bootloader's environment: every byte).
func TestDeltaUpdate(t *testing.T) {
	t.Parallel() // own images and work directories: runs beside the other long tests
	e2fsck := testtool.Need(t, "e2fsck")
	dir := t.TempDir()
	env := []string{"SOURCE_DATE_EPOCH=1700000000"}
	const dt = "genericx86-64-ext"
	key := filepath.Join(dir, "key")
	mustHostos(t, nil, nil, "bundle", "keygen", "-o", key)

	// The image, at version 0.1.0 in slot A from a small tree.
	spec := fmt.Sprintf("device_type = %q\n[sizes]\nboot = 40\nroot = %d\nstate = 8\ndata = 32\n[rootfs]\nsource = %q\n",
		dt, deltaRootMiB+8, rootTree(t, dir, "0.1.0"))
	must(t, os.WriteFile(filepath.Join(dir, "spec.toml"), []byte(spec), 0o644))
	img := filepath.Join(dir, "disk.img")
	mustHostos(t, env, nil, "build", "-q", "--spec", filepath.Join(dir, "spec.toml"), "-o", img)

	// Versions 1 and 2 of the big tree: one file changes, os-release (the version it names).
	tree := filepath.Join(dir, "tree")
	deltaTree(t, tree)
	create := func(out, v string, more ...string) string {
		args := append([]string{"bundle", "create", "-q", "--rootfs", tree, "--device-type", dt, "--version", v,
			"--root-size", fmt.Sprint(deltaRootMiB), "--sign", key, "-o", out}, more...)
		return mustHostos(t, env, nil, args...)
	}
	v1, v2, d2 := filepath.Join(dir, "v1.bundle"), filepath.Join(dir, "v2.bundle"), filepath.Join(dir, "v2.delta")
	create(v1, "1.0.0")
	setVersion(t, tree, "2.0.0")
	create(v2, "2.0.0")
	out := create(d2, "2.0.0", "--delta-from", v1)
	if !strings.Contains(out, "from 1.0.0") {
		t.Errorf("bundle create --delta-from says %q", out)
	}
	full, small := fileSize(t, v2), fileSize(t, d2)
	t.Logf("root filesystem %d MiB (%d MiB of files): full bundle %d bytes, delta bundle %d bytes (%.3f %%)",
		deltaRootMiB, deltaDataMiB, full, small, 100*float64(small)/float64(full))
	if small*50 > full {
		t.Fatalf("delta bundle %d bytes > 2 %% of the full bundle's %d", small, full)
	}
	// Reproducible: the same inputs give the same delta bundle.
	again := filepath.Join(dir, "again.delta")
	create(again, "2.0.0", "--delta-from", v1)
	if fileSum(t, again) != fileSum(t, d2) {
		t.Error("two delta bundles of the same inputs differ")
	}
	insp := mustHostos(t, nil, nil, "bundle", "inspect", "--verify", "--key", key+".pub", d2)
	if !strings.Contains(insp, "verified") {
		t.Errorf("bundle inspect --verify of the delta:\n%s", insp)
	}

	// The device runs version 1 in slot B, committed.
	mustHostos(t, nil, nil, "update", "-q", "--key", key+".pub", "--image", img, "--booted", "A", v1)
	mustHostos(t, nil, nil, "commit", "--image", img, "--booted", "B")
	if s := status(t, img, bootenv.SlotB); s.Versions[bootenv.SlotB] != "1.0.0" || s.Pending {
		t.Fatalf("after the update to 1.0.0: %+v", s)
	}
	// The same base from the disk image: its active slot (labelled resin-rootB) is version 1.
	fromImg := filepath.Join(dir, "from-img.delta")
	create(fromImg, "2.0.0", "--delta-from", img)
	if fileSum(t, fromImg) != fileSum(t, d2) {
		t.Error("the delta made from the disk image's running slot differs from the one made from the version 1 bundle")
	}

	aOff, aSize := slotRange(t, img, "resin-rootA")
	fullImg, deltaImg := filepath.Join(dir, "full.img"), filepath.Join(dir, "delta.img")
	copyImage(t, img, fullImg)
	copyImage(t, img, deltaImg)
	mustHostos(t, nil, nil, "update", "-q", "--key", key+".pub", "--image", fullImg, "--booted", "B", v2)
	out = mustHostos(t, nil, nil, "update", "-q", "--key", key+".pub", "--image", deltaImg, "--booted", "B", d2)
	t.Logf("hostos update of the delta: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "delta from 1.0.0") {
		t.Errorf("update of the delta says %q", out)
	}
	slotFull, slotDelta := readRange(t, fullImg, aOff, aSize), readRange(t, deltaImg, aOff, aSize)
	if !bytes.Equal(slotFull, slotDelta) {
		t.Fatal("slot A after the delta update differs from slot A after the full update")
	}
	fsImg := filepath.Join(dir, "slotA.ext4")
	must(t, os.WriteFile(fsImg, slotDelta[:deltaRootMiB<<20], 0o644))
	run(t, e2fsck, "-fn", fsImg)
	if s := status(t, deltaImg, bootenv.SlotB); s.Versions[bootenv.SlotA] != "2.0.0" || !s.Pending || s.Env.Root != bootenv.SlotA {
		t.Fatalf("after the delta update: %+v", s)
	}
	os.Remove(deltaImg)
	os.Remove(fsImg)

	// Chunks over HTTP: a chunked bundle of version 2 (the signed index) with its chunk store next to it;
	// the update fetches only the chunks the running slot lacks.
	srvDir := filepath.Join(dir, "srv")
	must(t, os.MkdirAll(srvDir, 0o755))
	out = create(filepath.Join(srvDir, "v2.idx"), "2.0.0", "--chunked")
	if !strings.Contains(out, "chunked bundle") {
		t.Errorf("bundle create --chunked says %q", out)
	}
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.FileServer(http.Dir(srvDir)).ServeHTTP(countingWriter{w, &served}, r)
	}))
	defer srv.Close()
	httpImg := filepath.Join(dir, "http.img")
	copyImage(t, img, httpImg)
	out = mustHostos(t, nil, nil, "update", "-q", "--key", key+".pub", "--image", httpImg, "--booted", "B", srv.URL+"/v2.idx")
	t.Logf("hostos update over HTTP: %s; the server sent %d bytes, %.3f %% of the full bundle", strings.TrimSpace(out), served.Load(),
		100*float64(served.Load())/float64(full))
	if served.Load()*50 > full {
		t.Errorf("the server sent %d bytes, more than 2 %% of the full bundle's %d", served.Load(), full)
	}
	if !bytes.Equal(readRange(t, httpImg, aOff, aSize), slotFull) {
		t.Fatal("slot A after the update over HTTP differs from slot A after the full update")
	}
	os.Remove(httpImg)
	os.Remove(fullImg)

	// Bad deltas, each refused with one line before anything is written.
	keyPEM, err := os.ReadFile(key)
	must(t, err)
	corrupted := filepath.Join(dir, "corrupted.delta")
	rewriteDelta(t, d2, corrupted, keyPEM, func(b []byte, _ delta.Index) []byte { b[len(b)/2] ^= 1; return b })
	missing := filepath.Join(dir, "missing.delta")
	rewriteDelta(t, d2, missing, keyPEM, func(b []byte, idx delta.Index) []byte {
		// The new chunks come in index order: drop the last one whole.
		for i := len(idx.Chunks) - 1; i >= 0; i-- {
			c := idx.Chunks[i]
			if c.Len <= int64(len(b)) && sha256.Sum256(b[int64(len(b))-c.Len:]) == c.Sum {
				return b[:int64(len(b))-c.Len]
			}
		}
		t.Fatal("no new chunk at the end of the delta")
		return nil
	})
	damaged := filepath.Join(dir, "damaged.delta")
	b, err := os.ReadFile(d2)
	must(t, err)
	b[len(b)-4096] ^= 0x40
	must(t, os.WriteFile(damaged, b, 0o644))
	truncated := filepath.Join(dir, "truncated.delta")
	must(t, os.WriteFile(truncated, b[:len(b)-8192], 0o644))
	unsigned := filepath.Join(dir, "unsigned.delta")
	mustHostos(t, env, nil, "bundle", "create", "-q", "--rootfs", tree, "--device-type", dt, "--version", "2.0.0",
		"--root-size", fmt.Sprint(deltaRootMiB), "--delta-from", v1, "-o", unsigned)

	before := fileSum(t, img)
	headA := readRange(t, img, aOff, 64<<10)
	for _, tc := range []struct {
		name, bundle, booted string
		words                []string
	}{
		{"corrupted chunk", corrupted, "B", []string{"corrupt bundle", "sha256 mismatch"}},
		{"damaged delta", damaged, "B", []string{"corrupt bundle", "sha256"}},
		{"wrong base", d2, "A", []string{"needs version 1.0.0"}},
		{"missing chunk", missing, "B", []string{"corrupt bundle", "is missing"}},
		{"truncated delta", truncated, "B", []string{"corrupt bundle", "truncated"}},
		{"unsigned delta", unsigned, "B", []string{"not signed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := hostos(t, nil, nil, "update", "-q", "--key", key+".pub", "--image", img, "--booted", tc.booted, tc.bundle)
			msg := strings.TrimSpace(r.stderr)
			if r.code == 0 || strings.Contains(msg, "\n") {
				t.Fatalf("exit %d, want a one-line error:\n%s", r.code, r.stderr)
			}
			for _, w := range tc.words {
				if !strings.Contains(strings.ReplaceAll(msg, tc.bundle, "BUNDLE"), w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			t.Logf("%s", msg)
			if !bytes.Equal(readRange(t, img, aOff, 64<<10), headA) {
				t.Fatal("slot A's head changed")
			}
			if fileSum(t, img) != before {
				t.Fatal("the image changed")
			}
			if s := status(t, img, bootenv.SlotB); s.Env.Root != bootenv.SlotB || s.Pending {
				t.Fatalf("bootloader: %+v", s)
			}
		})
	}
}

// countingWriter counts the body bytes a handler sends.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}
