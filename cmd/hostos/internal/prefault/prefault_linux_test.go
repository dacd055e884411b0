package prefault

import (
	"bytes"
	"os"
	"reflect"
	"syscall"
	"testing"
	"unsafe"
)

// TestExecutableMappings: the mappings found in this process's own maps are the test binary's
// read-only ones, and its code is among them.
func TestExecutableMappings(t *testing.T) {
	var buf [16 << 10]byte
	n := readMaps(buf[:])
	if n == 0 {
		t.Fatal("read nothing from /proc/self/maps")
	}
	ms := executableMappings(buf[:n])
	if len(ms) == 0 {
		t.Fatalf("no mappings found in:\n%s", buf[:n])
	}
	pc := reflect.ValueOf(TestExecutableMappings).Pointer()
	found := false
	for _, m := range ms {
		if m.start <= pc && pc < m.end {
			found = true
		}
	}
	if !found {
		t.Errorf("code at %#x is in none of %x", pc, ms)
	}
}

func TestExecutableMappingsParse(t *testing.T) {
	maps := []byte(`00400000-00b22000 r-xp 00000000 fe:00 1234                               /opt/my tools/hostos
00b22000-01257000 r--p 00722000 fe:00 1234                               /opt/my tools/hostos
01257000-012de000 rw-p 00e57000 fe:00 1234                               /opt/my tools/hostos
012de000-0332a000 rw-p 00000000 00:00 0
c000000000-c004000000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 fe:00 99                         /usr/lib/other.so
`)
	want := []mapping{{0x400000, 0xb22000}, {0xb22000, 0x1257000}}
	if got := executableMappings(maps); !reflect.DeepEqual(got, want) {
		t.Errorf("got %x, want %x", got, want)
	}
	for _, bad := range []string{"", "\n\n", "zz-10 r-xp 0 0 0 /x", "10-5 r-xp 0 0 0 /x", "-10 r-xp 0 0 0 /x", "10- r-xp 0 0 0 /x",
		"10-20 r-xp", "10-20 r 0 0 0 /x", "10-20-30 r-xp 0 0 0 /x"} {
		if got := executableMappings([]byte(bad)); len(got) != 0 {
			t.Errorf("%q: got %x, want none", bad, got)
		}
	}
}

// TestPopulateChangesNothing: populating a range, heap-like or file-backed, leaves every byte as it
// was.
func TestPopulateChangesNothing(t *testing.T) {
	page := uintptr(syscall.Getpagesize())
	anon, err := syscall.Mmap(-1, 0, 64*int(page), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(anon)
	for i := 0; i < len(anon); i += 3 * int(page) {
		anon[i] = byte(i/int(page)) | 1
	}
	before := bytes.Clone(anon)
	if err := madvise(uintptr(unsafe.Pointer(&anon[0])), uintptr(len(anon)), madvPopulateWrite); err != nil && err != syscall.EINVAL {
		t.Fatal(err) // EINVAL: a kernel before 5.14
	}
	if !bytes.Equal(before, anon) {
		t.Error("populating changed anonymous memory")
	}

	f, err := os.CreateTemp(t.TempDir(), "file")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := bytes.Repeat([]byte("hostos prefault "), 64*int(page)/16)
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, len(data), syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	start := uintptr(unsafe.Pointer(&m[0]))
	populateResident(start, start+uintptr(len(m)), page)
	if !bytes.Equal(m, data) {
		t.Error("populating changed a file mapping")
	}
}
