package tree

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type entry struct {
	hdr  tar.Header
	body string
}

func writeTar(t *testing.T, path string, entries []entry) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.body))
		h.ModTime = time.Unix(1600000000, 0)
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
}

func reg(name, body string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, body: body}
}

func TestDetect(t *testing.T) {
	d := t.TempDir()
	writeTar(t, filepath.Join(d, "plain.tar"), []entry{reg("a", "x")})
	writeTar(t, filepath.Join(d, "docker.tar"), []entry{reg("manifest.json", `[{"Config":"c.json","Layers":["l.tar"]}]`)})
	os.WriteFile(filepath.Join(d, "gz"), []byte{0x1f, 0x8b, 8, 0}, 0o644)
	os.WriteFile(filepath.Join(d, "xz"), []byte{0xfd, '7', 'z', 'X', 'Z', 0}, 0o644)
	os.WriteFile(filepath.Join(d, "zst"), []byte{0x28, 0xb5, 0x2f, 0xfd}, 0o644)
	os.WriteFile(filepath.Join(d, "junk"), []byte("hello"), 0o644)
	ext4 := make([]byte, 2048)
	ext4[1080], ext4[1081] = 0x53, 0xef
	os.WriteFile(filepath.Join(d, "img.tar"), ext4, 0o644) // the name must not matter
	os.MkdirAll(filepath.Join(d, "oci"), 0o755)
	os.WriteFile(filepath.Join(d, "oci", "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	os.MkdirAll(filepath.Join(d, "root"), 0o755)
	// A root filesystem is told by its first system directory: what follows is not read.
	writeTar(t, filepath.Join(d, "rootfs.tar"), []entry{reg("etc/os-release", "x")})
	if b, err := os.ReadFile(filepath.Join(d, "rootfs.tar")); err == nil {
		os.WriteFile(filepath.Join(d, "rootfs.tar"), append(b[:1024], bytes.Repeat([]byte("junk"), 256)...), 0o644)
	}

	tests := []struct {
		name string
		want Kind
		err  error
	}{
		{"plain.tar", KindTar, nil},
		{"rootfs.tar", KindTar, nil},
		{"docker.tar", KindDockerArchive, nil},
		{"gz", KindTar, nil},
		{"xz", KindTar, nil},
		{"zst", KindTar, nil},
		{"img.tar", KindExt4, nil},
		{"oci", KindOCI, nil},
		{"root", KindDir, nil},
		{"junk", "", ErrUnknownFormat},
		{"missing", "", fs.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Detect(filepath.Join(d, tc.name))
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("Detect = %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestStageRefusesEscapes(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name    string
		entries []entry
	}{
		{"dotdot", []entry{reg("a/../../evil", "x")}},
		{"symlink parent", []entry{
			{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: outside}},
			reg("link/evil", "x"),
		}},
		{"relative symlink parent", []entry{
			{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "up", Linkname: "../../../../../../.." + outside}},
			reg("up/evil", "x"),
		}},
		{"directory replaced by a symlink", []entry{
			{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o755}},
			reg("d/x", "x"),
			{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "d", Linkname: outside}},
			reg("d/evil", "x"),
		}},
		{"hard link out", []entry{{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "../../etc/passwd"}}}},
		{"hard link through symlink", []entry{
			{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "etc", Linkname: "/etc"}},
			{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "etc/passwd"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			src := filepath.Join(d, "evil.tar")
			writeTar(t, src, tc.entries)
			_, err := Stage(context.Background(), src, filepath.Join(d, "stage"), nil)
			if err == nil {
				t.Fatal("Stage accepted an escaping archive")
			}
			if _, err := os.Lstat(filepath.Join(outside, "evil")); err == nil {
				t.Fatal("Stage wrote outside the staging directory")
			}
		})
	}
}

func TestStageFixups(t *testing.T) {
	d := t.TempDir()
	src := filepath.Join(d, "r.tar")
	capability := "\x01\x00\x00\x02"
	suid := reg("bin/su", "su")
	suid.hdr.Mode = 0o4755
	ping := reg("bin/ping", "ping")
	ping.hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": capability}
	owned := reg("home/u/f", "mine")
	owned.hdr.Uid, owned.hdr.Gid = 1000, 1000
	writeTar(t, src, []entry{
		suid, ping, owned,
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "dev/null2", Linkname: "dev/null"}},
		reg("replaced", "first"),
		reg("replaced", "second"),
		reg("gone/a/b", "under a directory a file replaces"),
		reg("gone", "now a file"),
	})
	var calls int
	st, err := Stage(context.Background(), src, filepath.Join(d, "stage"), func(done, total int64) {
		calls++
		if done > total {
			t.Errorf("progress %d of %d", done, total)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 {
		t.Error("progress never called")
	}
	if b, err := os.ReadFile(filepath.Join(st.Dir, "replaced")); err != nil || string(b) != "second" {
		t.Errorf("replaced = %q, %v", b, err)
	}
	if st.Files != 5 || st.Bytes != int64(len("su")+len("ping")+len("mine")+len("second")+len("now a file")) {
		t.Errorf("Files %d Bytes %d", st.Files, st.Bytes)
	}
	has := func(op Op, path string) *Fixup {
		for i, f := range st.Fixups {
			if f.Op == op && f.Path == path {
				return &st.Fixups[i]
			}
		}
		return nil
	}
	if f := has(OpMknod, "/dev/null"); f == nil || f.Major != 1 || f.Minor != 3 {
		t.Errorf("mknod /dev/null: %+v", f)
	}
	if f := has(OpLink, "/dev/null2"); f == nil || f.Target != "/dev/null" || f.Links != 2 {
		t.Errorf("link /dev/null2: %+v", f)
	}
	if f := has(OpXattr, "/bin/ping"); f == nil || string(f.Value) != capability {
		t.Errorf("xattr /bin/ping: %+v", f)
	}
	if os.Getuid() != 1000 {
		if f := has(OpOwner, "/home/u/f"); f == nil || f.UID != 1000 || f.GID != 1000 {
			t.Errorf("owner /home/u/f: %+v", f)
		}
	}
	if f := has(OpMode, "/"); f == nil || f.Mode != 0o40755 {
		t.Errorf("mode /: %+v", f)
	}
	// Creations come before the attributes that name them.
	first := map[Op]int{}
	for i, f := range st.Fixups {
		if _, ok := first[f.Op]; !ok {
			first[f.Op] = i
		}
	}
	if first[OpMknod] > first[OpOwner] || first[OpLink] > first[OpOwner] {
		t.Errorf("fixup order: %v", first)
	}
	if _, err := os.Lstat(filepath.Join(st.Dir, "dev", "null")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("device node staged: %v", err)
	}
}

func TestStageNeedsEmptyDir(t *testing.T) {
	d := t.TempDir()
	src := filepath.Join(d, "r.tar")
	writeTar(t, src, []entry{reg("a", "x")})
	stage := filepath.Join(d, "stage")
	os.MkdirAll(stage, 0o755)
	os.WriteFile(filepath.Join(stage, "old"), nil, 0o644)
	if _, err := Stage(context.Background(), src, stage, nil); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Stage into a used directory: %v", err)
	}
}

func TestRootOwner(t *testing.T) {
	for _, c := range []struct{ uid, gid, me, wantUID, wantGID uint32 }{
		{1000, 1000, 1000, 0, 0},       // the builder's staging directory (fakeroot, pseudo)
		{0, 0, 1000, 0, 0},             // already root's
		{1001, 1001, 1000, 1001, 1001}, // someone else's: kept as it is
		{1000, 100, 0, 1000, 100},      // built by root: the owner as it is
	} {
		if u, g := rootOwner(c.uid, c.gid, c.me); u != c.wantUID || g != c.wantGID {
			t.Errorf("rootOwner(%d, %d, %d) = %d, %d", c.uid, c.gid, c.me, u, g)
		}
	}
}
