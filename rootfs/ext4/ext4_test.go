//go:build unix

package ext4

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/hostos/hostos/rootfs/tree"
)

const (
	partOff  = 4 << 20
	partSize = 64 << 20
	nobody   = 65534
)

// requireTools skips when a tool is missing, and fails under CI.
func requireTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				tb.Fatalf("%s is required under CI: %v", tool, err)
			}
			tb.Skipf("%s not installed: %v", tool, err)
		}
	}
}

// TestMain turns the test binary into the unprivileged builder when the parent asks for it.
func TestMain(m *testing.M) {
	if src := os.Getenv("HOSTOS_EXT4_CHILD_SRC"); src != "" {
		msg := "ok"
		if err := build(src, os.Getenv("HOSTOS_EXT4_CHILD_IMG")); err != nil {
			msg = err.Error()
		}
		if err := os.WriteFile(os.Getenv("HOSTOS_EXT4_CHILD_RESULT"), []byte(msg), 0o644); err != nil {
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var testOptions = Options{Label: "resin-rootA", InodeRatio: 8192}

// build is what a builder does with a source: copy an ext4 image, use a directory, or stage the rest.
func build(src, img string) error {
	ctx := context.Background()
	kind, err := tree.Detect(src)
	if err != nil {
		return err
	}
	switch kind {
	case tree.KindExt4:
		return CopyImage(ctx, img, partOff, partSize, src, testOptions.Label)
	case tree.KindDir:
		st, err := tree.Scan(src)
		if err != nil {
			return err
		}
		return Make(ctx, img, partOff, partSize, testOptions, st)
	}
	stage, err := os.MkdirTemp(filepath.Dir(img), "stage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	st, err := tree.Stage(ctx, src, stage, nil)
	if err != nil {
		return err
	}
	return Make(ctx, img, partOff, partSize, testOptions, st)
}

// sharedDir is a directory the unprivileged child can write into.
func sharedDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "hostos-ext4-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newImage(t testing.TB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(partOff + partSize + 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
}

// buildAsNobody builds src into img as user nobody: in a child process when the test runs as root.
func buildAsNobody(t *testing.T, dir, src, img string) error {
	t.Helper()
	if os.Geteuid() != 0 {
		return build(src, img)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "child.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	result := filepath.Join(dir, "child.result")
	os.Remove(result)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"HOSTOS_EXT4_CHILD_SRC="+src, "HOSTOS_EXT4_CHILD_IMG="+img, "HOSTOS_EXT4_CHILD_RESULT="+result)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child as nobody: %v: %s", err, out)
	}
	fi, err := os.Stat(result)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody {
		t.Fatalf("child ran as uid %d, want %d", st.Uid, nobody)
	}
	msg, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg) != "ok" {
		return errors.New(string(msg))
	}
	return nil
}

type entry struct {
	hdr  tar.Header
	body string
}

var (
	mtime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	// capability v2: cap_net_raw permitted and effective.
	capValue = string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00})
)

func dir(name string, mode int64, uid, gid int) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: gid, ModTime: mtime}}
}

func file(name string, mode int64, uid, gid int, body string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Uid: uid, Gid: gid, ModTime: mtime, Size: int64(len(body))}, body: body}
}

func rootfsEntries() []entry {
	ping := file("usr/bin/ping", 0o755, 0, 0, "ping")
	ping.hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": capValue, "SCHILY.xattr.user.note": "hello"}
	old := file("etc/old", 0o644, 0, 0, "old")
	old.hdr.ModTime = time.Unix(1234567890, 0)
	return []entry{
		dir("./", 0o755, 0, 0),
		dir("bin/", 0o755, 0, 0),
		file("bin/su", 0o4755, 0, 0, "su binary"),
		file("bin/wall", 0o2755, 0, 5, "wall"),
		dir("dev/", 0o755, 0, 0),
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mtime}},
		{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Gid: 6, Devmajor: 8, Devminor: 0, ModTime: mtime}},
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/initctl", Mode: 0o600, ModTime: mtime}},
		dir("etc/", 0o755, 0, 0),
		file("etc/shadow", 0o640, 0, 42, "root:*:1::::::\n"),
		old,
		file("etc/a", 0o644, 0, 0, "linked"),
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "etc/b", Linkname: "etc/a", Mode: 0o644, ModTime: mtime}},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/abs", Linkname: "/usr/lib/os-release", Mode: 0o777, ModTime: mtime}},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/rel", Linkname: "../bin/su", Mode: 0o777, ModTime: mtime}},
		dir("home/user/", 0o750, 1000, 1000),
		file("home/user/notes", 0o600, 1000, 1000, "mine"),
		dir("tmp/", 0o1777, 0, 0),
		dir("ro/", 0o555, 0, 0),
		file("ro/locked", 0o000, 0, 0, "nobody reads me"),
		ping,
		file(`with space/a "quoted" name`, 0o644, 0, 0, "spaces"),
	}
}

func writeTar(t testing.TB, path, compression string, entries []entry) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w io.WriteCloser
	switch compression {
	case "":
		w = nopCloser{f}
	case "gzip":
		w = gzip.NewWriter(f)
	case "xz":
		if w, err = xz.NewWriter(f); err != nil {
			t.Fatal(err)
		}
	case "zstd":
		if w, err = zstd.NewWriter(f); err != nil {
			t.Fatal(err)
		}
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := e.hdr
		h.Format = tar.FormatPAX
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
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// inode is what the tests read back from debugfs stat.
type inode struct {
	ino, links          int
	typ                 string
	mode, uid, gid      uint32
	ctime, atime, mtime int64
	crtime              int64
	major, minor        int
	linkDest            string
}

var (
	reInode  = regexp.MustCompile(`Inode: (\d+)\s+Type: ([A-Za-z ]+?)\s+Mode:\s+(\d+)`)
	reOwner  = regexp.MustCompile(`User:\s+(\d+)\s+Group:\s+(\d+)`)
	reLinks  = regexp.MustCompile(`Links: (\d+)`)
	reTime   = regexp.MustCompile(`(?m)^\s*(ctime|atime|mtime|crtime): 0x([0-9a-f]+)`)
	reDevice = regexp.MustCompile(`Device major/minor number: (\d+):(\d+)`)
	reLink   = regexp.MustCompile(`Fast link dest: "(.*)"`)
)

func statPath(t *testing.T, img, p string) inode {
	t.Helper()
	q, err := Quote(p)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Debugfs{Image: img, Offset: partOff}.Run(context.Background(), "stat "+q)
	if err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	m := reInode.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("stat %s: no inode line in %q", p, out)
	}
	var in inode
	in.ino, _ = strconv.Atoi(m[1])
	in.typ = m[2]
	mode, _ := strconv.ParseUint(m[3], 8, 32)
	in.mode = uint32(mode)
	if m := reOwner.FindStringSubmatch(out); m != nil {
		u, _ := strconv.ParseUint(m[1], 10, 32)
		g, _ := strconv.ParseUint(m[2], 10, 32)
		in.uid, in.gid = uint32(u), uint32(g)
	}
	if m := reLinks.FindStringSubmatch(out); m != nil {
		in.links, _ = strconv.Atoi(m[1])
	}
	for _, m := range reTime.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseInt(m[2], 16, 64)
		switch m[1] {
		case "ctime":
			in.ctime = v
		case "atime":
			in.atime = v
		case "mtime":
			in.mtime = v
		case "crtime":
			in.crtime = v
		}
	}
	if m := reDevice.FindStringSubmatch(out); m != nil {
		in.major, _ = strconv.Atoi(m[1])
		in.minor, _ = strconv.Atoi(m[2])
	}
	if m := reLink.FindStringSubmatch(out); m != nil {
		in.linkDest = m[1]
	}
	return in
}

func xattr(t *testing.T, img, p, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "value")
	q, _ := Quote(p)
	if _, err := (Debugfs{Image: img, Offset: partOff}).Run(context.Background(), "ea_get -f "+out+" "+q+" "+name); err != nil {
		t.Fatalf("ea_get %s %s: %v", p, name, err)
	}
	v, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("ea_get %s %s: %v", p, name, err)
	}
	return string(v)
}

func catFile(t *testing.T, img, p string) string {
	t.Helper()
	q, _ := Quote(p)
	out, err := Debugfs{Image: img, Offset: partOff}.Run(context.Background(), "cat "+q)
	if err != nil {
		t.Fatalf("cat %s: %v", p, err)
	}
	return out
}

// fsckCopy runs e2fsck -fy on a copy of the partition and fails on anything it had to fix.
func fsckCopy(t *testing.T, img string) {
	t.Helper()
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cp := filepath.Join(t.TempDir(), "copy.img")
	dst, err := os.Create(cp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, partOff, partSize)); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	out, err := exec.Command("e2fsck", "-fy", cp).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fy on a copy: %v\n%s", err, out)
	}
}

func TestMakeRootfsAsNobody(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs", "e2fsck")
	d := sharedDir(t)
	src := filepath.Join(d, "rootfs.tar")
	writeTar(t, src, "", rootfsEntries())
	img := filepath.Join(d, "disk.img")
	newImage(t, img)
	if err := buildAsNobody(t, d, src, img); err != nil {
		t.Fatal(err)
	}
	if err := Check(context.Background(), img, partOff); err != nil {
		t.Fatal(err)
	}
	fsckCopy(t, img)

	for _, e := range rootfsEntries() {
		h := e.hdr
		p := "/" + strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		t.Run(p, func(t *testing.T) {
			in := statPath(t, img, p)
			want := map[byte]string{tar.TypeReg: "regular", tar.TypeDir: "directory", tar.TypeChar: "character special",
				tar.TypeBlock: "block special", tar.TypeFifo: "FIFO", tar.TypeSymlink: "symlink", tar.TypeLink: "regular"}[h.Typeflag]
			if in.typ != want {
				t.Errorf("type %q, want %q", in.typ, want)
			}
			if h.Typeflag == tar.TypeLink {
				target := statPath(t, img, "/"+h.Linkname)
				if in.ino != target.ino || in.links != 2 {
					t.Errorf("hard link: inode %d links %d, target inode %d", in.ino, in.links, target.ino)
				}
				return
			}
			if h.Typeflag != tar.TypeSymlink && in.mode != uint32(h.Mode) {
				t.Errorf("mode %04o, want %04o", in.mode, h.Mode)
			}
			if in.uid != uint32(h.Uid) || in.gid != uint32(h.Gid) {
				t.Errorf("owner %d:%d, want %d:%d", in.uid, in.gid, h.Uid, h.Gid)
			}
			if in.mtime != h.ModTime.Unix() {
				t.Errorf("mtime %d, want %d", in.mtime, h.ModTime.Unix())
			}
			switch h.Typeflag {
			case tar.TypeChar, tar.TypeBlock:
				if in.major != int(h.Devmajor) || in.minor != int(h.Devminor) {
					t.Errorf("device %d:%d, want %d:%d", in.major, in.minor, h.Devmajor, h.Devminor)
				}
			case tar.TypeSymlink:
				if in.linkDest != h.Linkname {
					t.Errorf("symlink to %q, want %q", in.linkDest, h.Linkname)
				}
			case tar.TypeReg:
				if got := catFile(t, img, p); got != e.body {
					t.Errorf("content %q, want %q", got, e.body)
				}
			}
			for k, v := range h.PAXRecords {
				if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
					if got := xattr(t, img, p, name); got != v {
						t.Errorf("xattr %s = %x, want %x", name, got, v)
					}
				}
			}
		})
	}
	// Nothing of the builder's identity may leak into the filesystem.
	out, err := Debugfs{Image: img, Offset: partOff}.Run(context.Background(), "ls -l /", "ls -l /lost+found")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, strconv.Itoa(nobody)) {
		t.Errorf("builder uid %d in the filesystem:\n%s", nobody, out)
	}
	if lbl := volumeName(t, img); lbl != testOptions.Label {
		t.Errorf("label %q, want %q", lbl, testOptions.Label)
	}
}

var reVolume = regexp.MustCompile(`(?m)^Filesystem volume name:\s+(.*)$`)

func volumeName(t *testing.T, img string) string {
	t.Helper()
	out, err := Debugfs{Image: img, Offset: partOff}.Run(context.Background(), "stats -h")
	if err != nil {
		t.Fatal(err)
	}
	m := reVolume.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no volume name in %q", out)
	}
	return m[1]
}
