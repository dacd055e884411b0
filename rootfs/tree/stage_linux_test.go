package tree

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The staged files, with the fixups, carry every permission bit of the archive whatever the umask: files
// are created with their mode and chmodded only when the umask took bits away.
func TestStageModes(t *testing.T) {
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	d := t.TempDir()
	src := filepath.Join(d, "r.tar")
	perms := map[string]int64{"suid": 0o4755, "sgid": 0o2711, "sticky": 0o1777, "world": 0o666, "private": 0o600, "none": 0, "exec": 0o755}
	var entries []entry
	for name, perm := range perms {
		e := reg("d/"+name, name)
		e.hdr.Mode = perm
		entries = append(entries, e)
	}
	writeTar(t, src, entries)
	st, err := Stage(context.Background(), src, filepath.Join(d, "stage"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, perm := range perms {
		fi, err := os.Lstat(filepath.Join(st.Dir, "d", name))
		if err != nil {
			t.Fatal(err)
		}
		got := uint32(fi.Sys().(*syscall.Stat_t).Mode) & 0o7777
		for _, f := range st.Fixups {
			if f.Op == OpMode && f.Path == "/d/"+name {
				got = f.Mode & 0o7777
			}
		}
		if got != uint32(perm) {
			t.Errorf("%s: mode %04o, want %04o", name, got, perm)
		}
		if b, err := os.ReadFile(filepath.Join(st.Dir, "d", name)); err != nil || string(b) != name {
			t.Errorf("%s: body %q, %v", name, b, err)
		}
	}
}

func TestStageWithinRoom(t *testing.T) {
	d := t.TempDir()
	src := filepath.Join(d, "r.tar")
	big := reg("big", string(make([]byte, 64<<10)))
	writeTar(t, src, []entry{reg("small", "x"), big, reg("after", "y")})
	stage := filepath.Join(d, "stage")
	_, err := StageWithin(context.Background(), src, KindTar, stage, 32<<10, nil)
	if !errors.Is(err, ErrNoRoom) {
		t.Fatalf("StageWithin 32 KiB of a 64 KiB file: %v, want ErrNoRoom", err)
	}
	if _, err := os.Lstat(filepath.Join(stage, "big")); err == nil {
		t.Error("the entry past the room was written")
	}
	os.RemoveAll(stage)
	st, err := StageWithin(context.Background(), src, KindTar, stage, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 3 {
		t.Errorf("Files %d, want 3", st.Files)
	}

	// What a later entry replaces takes no room any more: 64 KiB replaced by a byte, then 64 KiB more,
	// fit in 100 KiB (the three entries' sum does not).
	replaced := filepath.Join(d, "replaced.tar")
	writeTar(t, replaced, []entry{big, reg("big", "z"), reg("big2", string(make([]byte, 64<<10)))})
	stage = filepath.Join(d, "stage-replaced")
	if _, err := StageWithin(context.Background(), replaced, KindTar, stage, 100<<10, nil); err != nil {
		t.Fatalf("StageWithin 100 KiB of 64 KiB replaced and 64 KiB: %v", err)
	}
}

// A plain tar's large bodies are copied from the archive by the kernel, the small ones read with the
// headers: both land whole, each in its file, and progress reaches the archive's size.
func TestStagePlainTarBodies(t *testing.T) {
	d := t.TempDir()
	src := filepath.Join(d, "r.tar")
	large := make([]byte, 3*sendMin+123)
	for i := range large {
		large[i] = byte(i * 7)
	}
	writeTar(t, src, []entry{reg("a/large", string(large)), reg("a/small", "small"), reg("a/large2", string(large[1:])), reg("z", "z")})
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	var done, total int64
	st, err := Stage(context.Background(), src, filepath.Join(d, "stage"), func(d, t int64) { done, total = d, t })
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a/large": string(large), "a/small": "small", "a/large2": string(large[1:]), "z": "z"} {
		if b, err := os.ReadFile(filepath.Join(st.Dir, name)); err != nil || string(b) != want {
			t.Errorf("%s: %d bytes, %v; want %d", name, len(b), err, len(want))
		}
	}
	if done != fi.Size() || total != fi.Size() {
		t.Errorf("progress %d of %d, want %d of %d", done, total, fi.Size(), fi.Size())
	}
}

// Every staged path carries its entry's mtime, and the owner and mode fixups are exactly those the
// staged files need: regular files (whose times and state are settled through their descriptors),
// a replaced one, hard links to a name replaced afterwards, directories, symlinks.
func TestStageTimesAndFixups(t *testing.T) {
	d := t.TempDir()
	src := filepath.Join(d, "r.tar")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	when := map[string]time.Time{}
	add := func(h tar.Header, body string) {
		h.Size = int64(len(body))
		h.ModTime = time.Unix(1500000000+int64(len(when))*3600, int64(len(when))*1000)
		h.Format = tar.FormatPAX
		when[strings.TrimSuffix(h.Name, "/")] = h.ModTime
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	add(tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755}, "")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "etc/a", Mode: 0o640, Uid: 0, Gid: 42}, "a")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "etc/b", Mode: 0o4711, Uid: os.Getuid(), Gid: os.Getgid()}, strings.Repeat("b", 40000))
	add(tar.Header{Typeflag: tar.TypeReg, Name: "etc/c", Mode: 0o600, Uid: os.Getuid(), Gid: os.Getgid()}, "c")
	add(tar.Header{Typeflag: tar.TypeLink, Name: "etc/c-link", Linkname: "etc/c"}, "")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "etc/c", Mode: 0o644, Uid: 7, Gid: 7}, "c again")
	add(tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/s", Linkname: "a"}, "")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "etc/a", Mode: 0o444}, "a replaced")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	delete(when, "etc/c-link") // a hard link has the time of its inode
	when["etc/c-link"] = time.Unix(1500000000+3*3600, 3000)

	st, err := Stage(context.Background(), src, filepath.Join(d, "stage"), nil)
	if err != nil {
		t.Fatal(err)
	}
	fix := map[string]Fixup{}
	for _, f := range st.Fixups {
		fix[f.Path+" "+strconv.Itoa(int(f.Op))] = f
	}
	for name, mt := range when {
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(st.Dir, name), &s); err != nil {
			t.Fatal(err)
		}
		if got := time.Unix(s.Mtim.Unix()); !got.Equal(mt) {
			t.Errorf("%s: mtime %v, want %v", name, got, mt)
		}
		if s.Mode&unix.S_IFMT == unix.S_IFDIR || s.Mode&unix.S_IFMT == unix.S_IFLNK {
			continue
		}
		_, owner := fix["/"+name+" "+strconv.Itoa(int(OpOwner))]
		_, mode := fix["/"+name+" "+strconv.Itoa(int(OpMode))]
		// The owners the archive wants: the last etc/a and etc/c, and for the link the first etc/c.
		ids := map[string][2]int{"etc/a": {0, 0}, "etc/b": {os.Getuid(), os.Getgid()}, "etc/c": {7, 7},
			"etc/c-link": {os.Getuid(), os.Getgid()}}[name]
		if wantOwner := s.Uid != uint32(ids[0]) || s.Gid != uint32(ids[1]); owner != wantOwner {
			t.Errorf("%s: owner fixup %v, want %v", name, owner, wantOwner)
		}
		if m := fix["/"+name+" "+strconv.Itoa(int(OpMode))]; mode && m.Mode&0o7777 == s.Mode&0o7777 {
			t.Errorf("%s: mode fixup to the mode it has, %o", name, m.Mode)
		}
	}
	for name, perm := range map[string]uint32{"etc/a": 0o444, "etc/b": 0o4711, "etc/c": 0o644, "etc/c-link": 0o600} {
		var s unix.Stat_t
		unix.Lstat(filepath.Join(st.Dir, name), &s)
		got := s.Mode & 0o7777
		if m, ok := fix["/"+name+" "+strconv.Itoa(int(OpMode))]; ok {
			got = m.Mode & 0o7777
		}
		if got != perm {
			t.Errorf("%s: mode %o with the fixups, want %o", name, got, perm)
		}
	}
}
