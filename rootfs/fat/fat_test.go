package fat

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const mib = 1 << 20

// needTools skips the test when a tool is missing, unless CI is set, where it fails.
func needTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not installed: %v", n, err)
			}
			t.Skipf("%s not installed: %v", n, err)
		}
	}
}

// tool runs an external program in the same deterministic environment the package uses and returns stdout.
func tool(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = toolEnv(time.Time{})
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func sparseImage(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeHost(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// bootFiles is a boot partition's worth of files: nested directories, long and mixed-case names,
// non-ASCII names, a 3 MiB file from the host and empty files.
func bootFiles(t testing.TB) (files []File, want map[string][]byte) {
	t.Helper()
	host := t.TempDir()
	big := randomBytes(t, 3*mib)
	logo := randomBytes(t, 5000)
	files = []File{
		{Dst: "/config.json", Data: []byte(`{"deviceType":"raspberrypi4-64","persistentLogging":false}`)},
		{Dst: "/EFI/BOOT/grubenv", Data: bytes.Repeat([]byte("#"), 1024)},
		{Dst: "/EFI/BOOT/bootx64.efi", Src: writeHost(t, host, "grub.bin", big)},
		{Dst: "/splash/balena-logo.png", Src: writeHost(t, host, "logo", logo)},
		{Dst: "/balena-image", Data: nil},
		{Dst: "/empty-from-host", Src: writeHost(t, host, "empty", nil)},
		{Dst: "/system-connections/resin-wifi-01", Data: []byte("[connection]\nid=resin-wifi\n")},
		{Dst: "/system-connections/README.ignore", Data: []byte("sample\n")},
		{Dst: "/Some Long Directory Name/Nested Deeper Still/a file with a rather long name.txt", Data: []byte("deep\n")},
		{Dst: "/MixedCase.Txt", Data: []byte("mixed\n")},
		{Dst: "/lower.txt", Data: []byte("lower\n")},
	}
	want = map[string][]byte{}
	for _, f := range files {
		d := f.Data
		if f.Src != "" {
			var err error
			if d, err = os.ReadFile(f.Src); err != nil {
				t.Fatal(err)
			}
		}
		if d == nil {
			d = []byte{}
		}
		want[f.Dst[1:]] = d
	}
	return files, want
}

func TestMakeCopyCheck(t *testing.T) {
	needTools(t, "mkfs.vfat", "mmd", "mcopy", "mtype", "mdir", "fsck.vfat")
	ctx := context.Background()
	const off = 4 * mib
	for _, tc := range []struct {
		name  string
		bits  int
		size  int64
		label string
	}{
		{"fat16-40MiB", 16, 40 * mib, "resin-boot"},
		{"fat32-40MiB", 32, 40 * mib, "RESIN-BOOT"},
		{"fat32-100MiB", 32, 100 * mib, "resin-boot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := sparseImage(t, off+tc.size+4*mib)
			files, want := bootFiles(t)
			if err := Make(ctx, img, off, tc.size, Options{Bits: tc.bits, Label: tc.label, VolumeID: 0xdeadbeef}); err != nil {
				t.Fatal(err)
			}
			if err := Copy(ctx, img, off, files, time.Time{}); err != nil {
				t.Fatal(err)
			}
			if err := Fsck(ctx, img, off, tc.size); err != nil {
				t.Fatal(err)
			}
			drive := img + "@@" + "4194304"

			// mtools reads back every file byte for byte and lists exactly the files written.
			for p, data := range want {
				if got := tool(t, "mtype", "-i", drive, "::/"+p); !bytes.Equal(got, data) {
					t.Errorf("mtype %s: %d bytes differ from the %d written", p, len(got), len(data))
				}
			}
			var listed []string
			for _, l := range strings.Split(strings.TrimSpace(string(tool(t, "mdir", "-/", "-b", "-i", drive, "::/"))), "\n") {
				if !strings.HasSuffix(l, "/") {
					listed = append(listed, strings.TrimPrefix(l, "::/"))
				}
			}
			var wantPaths []string
			for p := range want {
				wantPaths = append(wantPaths, p)
			}
			slices.Sort(listed)
			slices.Sort(wantPaths)
			if !slices.Equal(listed, wantPaths) {
				t.Errorf("mdir lists %q, want %q", listed, wantPaths)
			}

			// The pure-Go reader agrees.
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fsys, err := Open(f, off, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			if fsys.Bits() != tc.bits {
				t.Errorf("Bits() = %d, want %d", fsys.Bits(), tc.bits)
			}
			if fsys.Label() != tc.label {
				t.Errorf("Label() = %q, want %q", fsys.Label(), tc.label)
			}
			walked := map[string][]byte{}
			var order []string
			err = fsys.Walk(func(p string, e DirEntry) error {
				order = append(order, p)
				if e.IsDir {
					return nil
				}
				b, err := fsys.ReadFile(p)
				if err != nil {
					return err
				}
				if int64(len(b)) != e.Size {
					t.Errorf("%s: Walk size %d, read %d bytes", p, e.Size, len(b))
				}
				walked[p] = b
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.IsSorted(order) {
				t.Errorf("Walk order not sorted: %q", order)
			}
			if len(walked) != len(want) {
				t.Errorf("Walk found %d files, want %d", len(walked), len(want))
			}
			for p, data := range want {
				if got, ok := walked[p]; !ok || !bytes.Equal(got, data) {
					t.Errorf("Walk %s: found %v, bytes equal %v", p, ok, bytes.Equal(got, data))
				}
				// Lookup ignores case, like the kernel.
				got, err := fsys.ReadFile("/" + strings.ToUpper(p))
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("ReadFile(upper-case %s): %v", p, err)
				}
			}
			if _, err := fsys.ReadFile("/EFI/BOOT/missing"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("ReadFile of a missing file: %v, want fs.ErrNotExist", err)
			}
			es, err := fsys.ReadDir("/efi/boot")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range es {
				names = append(names, e.Name)
			}
			slices.Sort(names)
			if !slices.Equal(names, []string{"bootx64.efi", "grubenv"}) {
				t.Errorf("ReadDir(/efi/boot) = %q", names)
			}

			// A second Copy overwrites, adds to existing directories (spelled in another case) and stays clean.
			upd := []File{
				{Dst: "/efi/boot/grubenv", Data: []byte("new env")},
				{Dst: "/EFI/BOOT/extra.cfg", Data: []byte("extra")},
			}
			if err := Copy(ctx, img, off, upd, time.Time{}); err != nil {
				t.Fatal(err)
			}
			if err := Fsck(ctx, img, off, tc.size); err != nil {
				t.Fatal(err)
			}
			fsys, err = Open(f, off, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range upd {
				if got, err := fsys.ReadFile(u.Dst); err != nil || !bytes.Equal(got, u.Data) {
					t.Errorf("after update, %s = %q, %v; want %q", u.Dst, got, err, u.Data)
				}
			}
			es, err = fsys.ReadDir("/")
			if err != nil {
				t.Fatal(err)
			}
			efi := 0
			for _, e := range es {
				if strings.EqualFold(e.Name, "efi") {
					efi++
				}
			}
			if efi != 1 {
				t.Errorf("root holds %d EFI directories after the update, want 1", efi)
			}
		})
	}
}

func TestReproducible(t *testing.T) {
	needTools(t, "mkfs.vfat", "mmd", "mcopy")
	ctx := context.Background()
	stamp := time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)
	for _, bits := range []int{16, 32} {
		files, _ := bootFiles(t)
		var sums [][32]byte
		for i := range 2 {
			img := sparseImage(t, 48*mib)
			if err := Make(ctx, img, 4*mib, 40*mib, Options{Bits: bits, Label: "resin-boot", VolumeID: 0x1234, Time: stamp}); err != nil {
				t.Fatal(err)
			}
			if i == 1 {
				// Host file times must not leak into the image.
				for _, f := range files {
					if f.Src != "" {
						if err := os.Chtimes(f.Src, time.Now(), time.Now().Add(time.Hour)); err != nil {
							t.Fatal(err)
						}
					}
				}
				time.Sleep(2100 * time.Millisecond) // FAT times have a 2 s resolution
			}
			if err := Copy(ctx, img, 4*mib, files, stamp); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			sums = append(sums, sha256.Sum256(b))
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			fsys, err := Open(f, 4*mib, 40*mib)
			if err != nil {
				t.Fatal(err)
			}
			e, err := fsys.Stat("/EFI/BOOT/bootx64.efi")
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !e.ModTime.Equal(stamp) {
				t.Errorf("fat%d: file time %v, want %v", bits, e.ModTime, stamp)
			}
		}
		if sums[0] != sums[1] {
			t.Errorf("fat%d: two runs with the same inputs differ: %x vs %x", bits, sums[0], sums[1])
		}
	}
}

// TestReadForeign reads file systems made by mkfs.vfat -C and mcopy -s alone, the way balena's build does.
func TestReadForeign(t *testing.T) {
	needTools(t, "mkfs.vfat", "mcopy")
	tree := t.TempDir()
	want := map[string][]byte{
		"config.json":                 []byte(`{}`),
		"device-type.json":            randomBytes(t, 3000),
		"EFI/BOOT/grub.cfg":           randomBytes(t, 700),
		"splash/balena-logo.png":      randomBytes(t, 40000),
		"A Long Name With Spaces.txt": []byte("x"),
		"Ünïcode long name.txt":       []byte("utf-8"),
		"zero":                        {},
	}
	for p, b := range want {
		if err := os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		writeHost(t, tree, p, b)
	}
	for _, tc := range []struct {
		bits int
		kib  int
	}{{12, 2048}, {16, 40 * 1024}, {32, 40 * 1024}} {
		img := filepath.Join(t.TempDir(), "boot.img")
		tool(t, "mkfs.vfat", "-F", strconv.Itoa(tc.bits), "-n", "RESIN-BOOT", "-S", "512", "-C", img, strconv.Itoa(tc.kib))
		entries, err := os.ReadDir(tree)
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"-i", img, "-s"}
		for _, e := range entries {
			args = append(args, filepath.Join(tree, e.Name()))
		}
		tool(t, "mcopy", append(args, "::/")...)
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		fsys, err := Open(f, 0, fi.Size())
		if err != nil {
			t.Fatal(err)
		}
		if fsys.Bits() != tc.bits || fsys.Label() != "RESIN-BOOT" {
			t.Errorf("fat%d: read Bits %d, Label %q", tc.bits, fsys.Bits(), fsys.Label())
		}
		got := map[string][]byte{}
		if err := fsys.Walk(func(p string, e DirEntry) error {
			if e.IsDir {
				return nil
			}
			b, err := fsys.ReadFile(p)
			got[p] = b
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("fat%d: Walk found %d files, want %d", tc.bits, len(got), len(want))
		}
		for p, b := range want {
			if !bytes.Equal(got[p], b) {
				t.Errorf("fat%d: %s differs", tc.bits, p)
			}
		}
		f.Close()
	}
}

func TestCopyRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []File
	}{
		{"relative", []File{{Dst: "config.json"}}},
		{"both sources", []File{{Dst: "/a", Src: "/etc/hostname", Data: []byte("x")}}},
		{"bad char", []File{{Dst: "/a:b"}}},
		{"non-ascii", []File{{Dst: "/système/a"}}},
		{"dot dot", []File{{Dst: "/a/../b"}}},
		{"twice", []File{{Dst: "/A"}, {Dst: "/a"}}},
		{"file and dir", []File{{Dst: "/a"}, {Dst: "/A/b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := sparseImage(t, mib)
			if err := Copy(context.Background(), img, 0, tc.files, time.Time{}); err == nil {
				t.Fatal("Copy accepted invalid files")
			}
		})
	}
}

func TestMakeRejects(t *testing.T) {
	needTools(t, "mkfs.vfat")
	for _, tc := range []struct {
		name      string
		imgSize   int64
		off, size int64
		o         Options
	}{
		{"fat12", 48 * mib, 4 * mib, 40 * mib, Options{Bits: 12}},
		{"fat32 too small", 48 * mib, 4 * mib, 20 * mib, Options{Bits: 32}},
		{"image too short", 40 * mib, 4 * mib, 40 * mib, Options{Bits: 16}},
		{"unaligned offset", 48 * mib, 1000, 40 * mib, Options{Bits: 16}},
		{"label too long", 48 * mib, 4 * mib, 40 * mib, Options{Bits: 16, Label: "RESIN-BOOT-X"}},
		{"label char", 48 * mib, 4 * mib, 40 * mib, Options{Bits: 16, Label: "A.B"}},
		{"time before 1980", 48 * mib, 4 * mib, 40 * mib, Options{Bits: 16, Time: time.Unix(0, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := sparseImage(t, tc.imgSize)
			if err := Make(context.Background(), img, tc.off, tc.size, tc.o); err == nil {
				t.Fatal("Make accepted invalid input")
			}
		})
	}
}

// TestFsckFindsDamage proves Fsck is a real judge: a file pointing at a cluster past the end fails it.
func TestFsckFindsDamage(t *testing.T) {
	needTools(t, "mkfs.vfat", "mcopy", "fsck.vfat")
	ctx := context.Background()
	const off, size = 4 * mib, 40 * mib
	img := sparseImage(t, off+size)
	if err := Make(ctx, img, off, size, Options{Bits: 16, Label: "RESIN-BOOT"}); err != nil {
		t.Fatal(err)
	}
	if err := Copy(ctx, img, off, []File{{Dst: "/A.BIN", Data: []byte("data")}}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := Fsck(ctx, img, off, size); err != nil {
		t.Fatal(err)
	}
	l, err := PlanLayout(16, size)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Root entry 1 (after the label) is A.BIN; its first cluster lives at bytes 26-27.
	at := off + (l.Reserved+2*l.FATSectors)*SectorSize + 32 + 26
	if _, err := f.WriteAt([]byte{0xf0, 0xff}, at); err != nil {
		t.Fatal(err)
	}
	err = Fsck(ctx, img, off, size)
	if err == nil {
		t.Fatal("Fsck passed a file system with a file starting past the last cluster")
	}
	if !strings.Contains(err.Error(), "fsck.vfat") {
		t.Errorf("Fsck error does not carry fsck's report: %v", err)
	}
	t.Logf("Fsck: %v", err)
}
