package tree

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
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
