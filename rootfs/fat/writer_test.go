package fat

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hostos/hostos/partition/disk"
)

// The disk abstraction's image files and block devices are writer devices.
var _ Device = (*disk.File)(nil)

// part is a FAT file system at a byte offset of an image file.
type part struct {
	img       string
	off, size int64
}

func (p part) drive() string { return p.img + "@@" + strconv.FormatInt(p.off, 10) }

// makePart creates an image holding a FAT file system: FAT16 and FAT32 with the package's Make, FAT12 (which
// Make does not offer) and any extra mkfs.vfat options with mkfs.vfat itself.
func makePart(t *testing.T, bits int, off, size int64, mkfsArgs ...string) part {
	t.Helper()
	p := part{img: sparseImage(t, off+size), off: off, size: size}
	if bits != 12 && len(mkfsArgs) == 0 {
		o := Options{Bits: bits, Label: "resin-boot", VolumeID: 0x1234abcd, Time: time.Date(2024, 1, 2, 3, 4, 6, 0, time.UTC)}
		if err := Make(context.Background(), p.img, off, size, o); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := append([]string{"-F", strconv.Itoa(bits), "-S", "512", "-n", "RESIN-BOOT", "-i", "1234abcd", "--invariant",
		"--offset=" + strconv.FormatInt(off/512, 10)}, mkfsArgs...)
	tool(t, "mkfs.vfat", append(args, p.img, strconv.FormatInt(size/1024, 10))...)
	return p
}

// open opens the file system for writing through the image file itself.
func (p part) open(t *testing.T) *RW {
	t.Helper()
	f, err := os.OpenFile(p.img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w, err := OpenRW(f, p.off, p.size)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// read opens the file system read-only with the package's reader.
func (p part) read(t *testing.T) *FS {
	t.Helper()
	f, err := os.Open(p.img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fsys, err := Open(f, p.off, p.size)
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// fsck runs fsck.vfat -n on a copy of the partition and returns its output and exit code.
func (p part) fsck(t *testing.T) (string, int) {
	t.Helper()
	src, err := os.Open(p.img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(t.TempDir(), "fsck-")
	if err != nil {
		t.Fatal(err)
	}
	if err := sparseCopy(tmp, src, p.off, p.size); err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	cmd := exec.Command("fsck.vfat", "-n", tmp.Name())
	cmd.Env = toolEnv(time.Time{})
	b, err := cmd.CombinedOutput()
	out := strings.ReplaceAll(string(b), tmp.Name(), "IMG")
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out, 0
}

func (p part) sum(t *testing.T) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p.img)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// mtoolsName is a name as mtools 4.0 shows it: it decodes long names one UTF-16 unit at a time, so each
// half of a surrogate pair (a character beyond U+FFFF) comes out as '_'. The kernel and the reader decode them.
func mtoolsName(name string) string {
	var b strings.Builder
	for _, r := range name {
		if r > 0xffff {
			b.WriteString("__")
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

var fsckSummary = regexp.MustCompile(`^IMG: \d+ files, (\d+)/(\d+) clusters$`)

// verify judges the file system with fsck.vfat -n (clean, and agreeing with Free), mtools (mdir names and
// mcopy bytes) and the package's reader (names, bytes and modification times).
func (p part) verify(t *testing.T, w *RW, want map[string][]byte, dirs []string, mtime map[string]time.Time) {
	t.Helper()
	out, code := p.fsck(t)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !fsckSummary.MatchString(lines[1]) {
		t.Fatalf("fsck.vfat -n: exit %d:\n%s", code, out)
	}
	m := fsckSummary.FindStringSubmatch(lines[1])
	used, _ := strconv.ParseInt(m[1], 10, 64)
	total, _ := strconv.ParseInt(m[2], 10, 64)
	if w != nil && w.Free() != (total-used)*w.ClusterSize() {
		t.Errorf("Free() = %d, fsck counts %d free clusters of %d bytes", w.Free(), total-used, w.ClusterSize())
	}

	var wantList, mtoolsList []string
	for name := range want {
		wantList = append(wantList, name)
		mtoolsList = append(mtoolsList, mtoolsName(name))
	}
	for _, d := range dirs {
		wantList = append(wantList, d+"/")
		mtoolsList = append(mtoolsList, mtoolsName(d)+"/")
	}
	slices.Sort(wantList)
	slices.Sort(mtoolsList)
	var listed []string
	for _, l := range strings.Split(strings.TrimSpace(string(tool(t, "mdir", "-/", "-b", "-i", p.drive(), "::/"))), "\n") {
		listed = append(listed, strings.TrimPrefix(l, "::/"))
	}
	slices.Sort(listed)
	if !slices.Equal(listed, mtoolsList) {
		t.Errorf("mdir lists\n%q\nwant\n%q", listed, mtoolsList)
	}
	host := t.TempDir()
	tool(t, "mcopy", "-s", "-n", "-i", p.drive(), "::*", host)
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(host, mtoolsName(name)))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("mcopy %s: %d bytes, %v; want %d bytes", name, len(got), err, len(data))
		}
	}

	fsys := p.read(t)
	var walked []string
	err := fsys.Walk(func(name string, e DirEntry) error {
		if e.IsDir {
			walked = append(walked, name+"/")
			return nil
		}
		walked = append(walked, name)
		got, err := fsys.ReadFile(name)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want[name]) {
			t.Errorf("reader %s: %d bytes differ from the %d written", name, len(got), len(want[name]))
		}
		if mt, ok := mtime[name]; ok && !e.ModTime.Equal(mt.Truncate(2*time.Second)) {
			t.Errorf("reader %s: modified %v, want %v", name, e.ModTime, mt)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(walked)
	if !slices.Equal(walked, wantList) {
		t.Errorf("reader walks\n%q\nwant\n%q", walked, wantList)
	}
}

// TestWriteFile drives the writer through replacing and creating files and directories on FAT12, FAT16 and
// FAT32 (two of them at a 1 MiB partition offset, written first by mtools) and judges every step with
// fsck.vfat, mtools and the reader.
func TestWriteFile(t *testing.T) {
	needTools(t, "mkfs.vfat", "fsck.vfat", "mcopy", "mdir", "mmd")
	for _, tc := range []struct {
		name      string
		bits      int
		off, size int64
		mkfs      []string
	}{
		{"fat12", 12, 0, 2 * mib, []string{"-s", "1"}},
		{"fat16-offset", 16, mib, 16 * mib, nil},
		{"fat32-offset", 32, mib, 40 * mib, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := makePart(t, tc.bits, tc.off, tc.size, tc.mkfs...)
			want := map[string][]byte{
				"config.json":            []byte(`{"deviceType":"raspberrypi4-64"}`),
				"EFI/BOOT/grubenv":       bytes.Repeat([]byte("#"), 1024),
				"splash/balena-logo.png": randomBytes(t, 5000),
			}
			dirs := []string{"EFI", "EFI/BOOT", "splash"}
			var files []File
			for name, data := range want {
				files = append(files, File{Dst: "/" + name, Data: data})
			}
			if err := Copy(context.Background(), p.img, p.off, files, time.Time{}); err != nil {
				t.Fatal(err)
			}
			w := p.open(t)
			if w.Bits() != tc.bits {
				t.Fatalf("Bits() = %d, want %d", w.Bits(), tc.bits)
			}
			cs := w.ClusterSize()
			mtimes := map[string]time.Time{}
			stamp := time.Date(2024, 5, 6, 7, 8, 11, 0, time.UTC)
			write := func(name string, data []byte) {
				t.Helper()
				stamp = stamp.Add(time.Hour)
				if err := w.WriteFile("/"+name, data, stamp); err != nil {
					t.Fatalf("WriteFile %s: %v", name, err)
				}
				key := name
				for k := range want {
					if strings.EqualFold(k, name) {
						key = k
					}
				}
				want[key], mtimes[key] = data, stamp
				// The writer sees its own writes.
				if got, err := w.ReadFile("/" + name); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("ReadFile %s after WriteFile: %d bytes, %v", name, len(got), err)
				}
			}
			steps := []struct {
				name string
				do   func(t *testing.T)
			}{
				{"replace-larger", func(t *testing.T) {
					free := w.Free()
					write("config.json", randomBytes(t, int(3*cs+100)))
					if got := free - w.Free(); got != 3*cs {
						t.Errorf("Free dropped by %d, want %d", got, 3*cs)
					}
				}},
				{"replace-smaller-other-case", func(t *testing.T) { write("CONFIG.JSON", []byte("{}")) }},
				{"replace-empty", func(t *testing.T) {
					write("config.json", []byte{})
					if e, err := w.Stat("/config.json"); err != nil || e.cluster != 0 || e.Size != 0 {
						t.Errorf("empty file: %+v, %v", e, err)
					}
				}},
				{"create-in-root", func(t *testing.T) {
					write("os-release", []byte("ID=balena-os\n"))
					write("NEWFILE.TXT", []byte("upper"))
					write("lower.txt", []byte("lower"))
					write("Mixed.Txt", []byte("mixed"))
					write("splash/extra.bin", randomBytes(t, int(cs)))
					if err := w.WriteFile("/splash", nil, stamp); err == nil {
						t.Error("WriteFile over a directory succeeded")
					}
					if err := w.WriteFile("/missing/file", nil, stamp); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("WriteFile into a missing directory: %v, want fs.ErrNotExist", err)
					}
					if err := w.WriteFile("/config.json/x", nil, stamp); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("WriteFile below a file: %v, want fs.ErrNotExist", err)
					}
					if err := w.WriteFile("/bad*name", nil, stamp); err == nil {
						t.Error("WriteFile accepted a name with '*'")
					}
				}},
				{"mkdir-nested", func(t *testing.T) {
					if err := w.MkdirAll("/system-connections/nested/deeper", stamp); err != nil {
						t.Fatal(err)
					}
					if err := w.MkdirAll("/SYSTEM-CONNECTIONS/nested", stamp); err != nil {
						t.Errorf("MkdirAll of an existing directory: %v", err)
					}
					if err := w.MkdirAll("/config.json/sub", stamp); err == nil {
						t.Error("MkdirAll through a file succeeded")
					}
					dirs = append(dirs, "system-connections", "system-connections/nested", "system-connections/nested/deeper")
					write("system-connections/nested/deeper/resin-wifi", []byte("[connection]\nid=resin-wifi\n"))
				}},
				{"grow-directory", func(t *testing.T) {
					for i := range 40 {
						write(fmt.Sprintf("system-connections/resin-wifi-connection-%02d", i), []byte(strconv.Itoa(i)))
					}
					e, err := w.Stat("/system-connections")
					if err != nil {
						t.Fatal(err)
					}
					if chain, err := w.chain(e.cluster, 0); err != nil || len(chain) < 2 {
						t.Errorf("directory of 43 entries spans %d clusters (%v), want at least 2", len(chain), err)
					}
					write("system-connections/resin-wifi-connection-07", randomBytes(t, int(2*cs)))
				}},
				{"non-ascii", func(t *testing.T) {
					write("splash/Ünïcödé ✓ 日本.txt", []byte("utf-16 long name"))
					write("splash/🚀 launch.txt", []byte("surrogate pair"))
				}},
			}
			for _, s := range steps {
				if !t.Run(s.name, func(t *testing.T) {
					s.do(t)
					p.verify(t, w, want, dirs, mtimes)
				}) {
					return
				}
			}
		})
	}
}

// TestWriteFileNoSpace fills a file system and checks that every write that cannot fit fails with ErrNoSpace
// before touching the image, while one that frees space still works.
func TestWriteFileNoSpace(t *testing.T) {
	needTools(t, "mkfs.vfat", "fsck.vfat", "mcopy", "mdir")
	for _, tc := range []struct {
		name      string
		bits      int
		off, size int64
	}{
		{"fat16", 16, 0, 16 * mib},
		{"fat32-offset", 32, mib, 40 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := makePart(t, tc.bits, tc.off, tc.size)
			w := p.open(t)
			stamp := time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)
			want := map[string][]byte{"config.json": []byte("{}")}
			if err := w.WriteFile("/config.json", want["config.json"], stamp); err != nil {
				t.Fatal(err)
			}
			free := w.Free()
			noSpace := func(what string, fn func() error) {
				t.Helper()
				before := p.sum(t)
				if err := fn(); !errors.Is(err, ErrNoSpace) {
					t.Errorf("%s: %v, want ErrNoSpace", what, err)
				}
				if p.sum(t) != before {
					t.Errorf("%s: image changed", what)
				}
				if w.Free() != free && free != 0 {
					t.Errorf("%s: Free() changed from %d to %d", what, free, w.Free())
				}
			}
			noSpace("file one byte too large", func() error { return w.WriteFile("/big", make([]byte, free+1), stamp) })
			big := bytes.Repeat([]byte{0xa5}, int(free))
			if err := w.WriteFile("/big", big, stamp); err != nil {
				t.Fatal(err)
			}
			want["big"] = big
			if w.Free() != 0 {
				t.Errorf("Free() = %d after filling the file system", w.Free())
			}
			free = 0
			p.verify(t, w, want, nil, nil)
			noSpace("new file", func() error { return w.WriteFile("/one", []byte{1}, stamp) })
			noSpace("replacement needing a cluster", func() error { return w.WriteFile("/config.json", []byte("{ }"), stamp) })
			noSpace("new directory", func() error { return w.MkdirAll("/dir", stamp) })
			// Emptying a file needs no cluster and frees its own.
			if err := w.WriteFile("/big", nil, stamp); err != nil {
				t.Fatal(err)
			}
			want["big"] = []byte{}
			p.verify(t, w, want, nil, nil)
		})
	}

	// The fixed FAT12/16 root directory cannot grow.
	p := makePart(t, 12, 0, mib, "-r", "16")
	w := p.open(t)
	want := map[string][]byte{}
	for i := 0; ; i++ {
		name := fmt.Sprintf("F%d", i)
		before := p.sum(t)
		err := w.WriteFile("/"+name, []byte(name), time.Time{})
		if errors.Is(err, ErrNoSpace) {
			if p.sum(t) != before {
				t.Error("full root directory: image changed")
			}
			if i != 15 { // 16 entries, one of them the label
				t.Errorf("root directory full after %d files, want 15", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want[name] = []byte(name)
	}
	p.verify(t, w, want, nil, nil)
}

// TestWriterDeterministic runs the same calls on two copies of an image, opened as partition/disk files, and
// compares the results.
func TestWriterDeterministic(t *testing.T) {
	needTools(t, "mkfs.vfat")
	base := makePart(t, 32, mib, 40*mib)
	var sums [][32]byte
	for range 2 {
		p := base
		p.img = filepath.Join(t.TempDir(), "copy.img")
		b, err := os.ReadFile(base.img)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.img, b, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := disk.Open(p.img, true)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		w, err := OpenRW(d, p.off, p.size)
		if err != nil {
			t.Fatal(err)
		}
		stamp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		for _, step := range []func() error{
			func() error { return w.MkdirAll("/system-connections", stamp) },
			func() error { return w.WriteFile("/config.json", bytes.Repeat([]byte("x"), 3000), stamp) },
			func() error { return w.WriteFile("/system-connections/resin-wifi", []byte("wifi"), stamp) },
			func() error { return w.WriteFile("/config.json", []byte("{}"), stamp) },
		} {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
		sums = append(sums, p.sum(t))
	}
	if sums[0] != sums[1] {
		t.Error("the same calls on the same image gave different bytes")
	}
}

func TestPutTime(t *testing.T) {
	for _, tc := range []struct {
		in, want time.Time
	}{
		{time.Date(2024, 5, 6, 7, 8, 11, 999, time.UTC), time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)},
		{time.Date(2024, 5, 6, 9, 8, 10, 0, time.FixedZone("CEST", 7200)), time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)},
		{time.Time{}, time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)},
		{time.Date(1979, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)},
		{time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)},
	} {
		var b [4]byte
		putTime(b[:], tc.in)
		le := [2]uint16{uint16(b[0]) | uint16(b[1])<<8, uint16(b[2]) | uint16(b[3])<<8}
		if got := fatTime(le[1], le[0]); !got.Equal(tc.want) {
			t.Errorf("putTime(%v) reads back as %v, want %v", tc.in, got, tc.want)
		}
	}
}

// powerLoss is a Device that loses power after a number of sector writes: every write is split at 512-byte
// sector boundaries, the first budget sectors reach the image and the rest are silently dropped, as a disk
// that only guarantees atomic sector writes would.
type powerLoss struct {
	f      *os.File
	budget int
	writes int // sector writes attempted
}

func (d *powerLoss) ReadAt(b []byte, off int64) (int, error) { return d.f.ReadAt(b, off) }
func (d *powerLoss) Sync() error                             { return nil }

func (d *powerLoss) WriteAt(b []byte, off int64) (int, error) {
	for done := 0; done < len(b); {
		n := min(len(b)-done, 512-int((off+int64(done))%512))
		d.writes++
		if d.writes <= d.budget {
			if _, err := d.f.WriteAt(b[done:done+n], off+int64(done)); err != nil {
				return done, err
			}
		}
		done += n
	}
	return len(b), nil
}

// allowedAfterCrash are the only things fsck.vfat -n may report after an interrupted write: lost clusters,
// FAT copies that differ (in those clusters), orphan long-name entries and a stale free-cluster count.
var allowedAfterCrash = []*regexp.Regexp{
	regexp.MustCompile(`^fsck\.fat \d`),
	regexp.MustCompile(`^IMG: \d+ files, \d+/\d+ clusters$`),
	regexp.MustCompile(`^Reclaimed \d+ unused clusters? \(\d+ bytes\)\.$`),
	regexp.MustCompile(`^FATs differ but appear to be intact\.$`),
	regexp.MustCompile(`^  Using first FAT\.$`),
	regexp.MustCompile(`^Orphaned long file name part ".*"$`),
	regexp.MustCompile(`^  Auto-deleting\.$`),
	regexp.MustCompile(`^Free cluster summary wrong \(\d+ vs\. really \d+\)$`),
	regexp.MustCompile(`^  Auto-correcting\.$`),
	regexp.MustCompile(`^Leaving filesystem unchanged\.$`),
}

// TestPowerLoss cuts the power after every possible number of sector writes of a change and checks that the
// image then holds exactly the old or the new state, with nothing worse than lost clusters for fsck.
func TestPowerLoss(t *testing.T) {
	needTools(t, "mkfs.vfat", "fsck.vfat", "mcopy")
	stamp := time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)
	oldConfig, newConfig := randomBytes(t, 3000), randomBytes(t, 5000)
	sibling := []byte("sibling\n")
	names := func(fsys *FS, dir string) (string, error) {
		es, err := fsys.ReadDir(dir)
		if err != nil {
			return "", err
		}
		var n []string
		for _, e := range es {
			n = append(n, e.Name)
		}
		return strings.Join(n, ","), nil
	}
	// shortNames fills dir with n files with 8.3 names.
	shortNames := func(w *RW, dir string, n int) (string, error) {
		var list []string
		for i := range n {
			name := fmt.Sprintf("F%02d.TXT", i)
			list = append(list, name)
			if err := w.WriteFile(dir+"/"+name, []byte(name), stamp); err != nil {
				return "", err
			}
		}
		return strings.Join(list, ","), nil
	}
	const longName = "resin-wifi-connection-long-name"
	for _, tc := range []struct {
		name      string
		bits      int
		off, size int64
		mkfs      []string
		setup     func(w *RW) (string, error) // returns the listing of the directory the change affects
		change    func(w *RW) error
		state     func(fsys *FS, before string) (string, error) // "old" or "new"
	}{
		{
			name: "fat16-replace", bits: 16, size: 8 * mib, mkfs: []string{"-s", "1"},
			setup: func(w *RW) (string, error) {
				if err := w.WriteFile("/config.json", oldConfig, stamp); err != nil {
					return "", err
				}
				return "", w.WriteFile("/sibling", sibling, stamp)
			},
			change: func(w *RW) error { return w.WriteFile("/config.json", newConfig, stamp.Add(time.Hour)) },
			state:  replaced("/config.json", oldConfig, newConfig, sibling),
		},
		{
			name: "fat32-offset-replace", bits: 32, off: mib, size: 40 * mib, mkfs: []string{"-s", "1"},
			setup: func(w *RW) (string, error) {
				if err := w.WriteFile("/config.json", oldConfig, stamp); err != nil {
					return "", err
				}
				return "", w.WriteFile("/sibling", sibling, stamp)
			},
			change: func(w *RW) error { return w.WriteFile("/config.json", newConfig, stamp.Add(time.Hour)) },
			state:  replaced("/config.json", oldConfig, newConfig, sibling),
		},
		{
			name: "fat32-replace-empty", bits: 32, size: 40 * mib, mkfs: []string{"-s", "1"},
			setup: func(w *RW) (string, error) {
				if err := w.WriteFile("/config.json", oldConfig, stamp); err != nil {
					return "", err
				}
				return "", w.WriteFile("/sibling", sibling, stamp)
			},
			change: func(w *RW) error { return w.WriteFile("/config.json", nil, stamp.Add(time.Hour)) },
			state:  replaced("/config.json", oldConfig, []byte{}, sibling),
		},
		{
			// The directory's only cluster is full: the new entry goes into a new cluster.
			name: "fat12-create-grow", bits: 12, size: mib, mkfs: []string{"-s", "1"},
			setup: func(w *RW) (string, error) {
				if err := w.MkdirAll("/dir", stamp); err != nil {
					return "", err
				}
				return shortNames(w, "/dir", 14)
			},
			change: func(w *RW) error { return w.WriteFile("/dir/"+longName, newConfig, stamp) },
			state:  created("/dir", "/dir/"+longName, newConfig, names),
		},
		{
			// Two entries are free at the end of the cluster: the long name spills into a new cluster.
			name: "fat32-create-grow-spill", bits: 32, size: 40 * mib, mkfs: []string{"-s", "1"},
			setup: func(w *RW) (string, error) {
				if err := w.MkdirAll("/dir", stamp); err != nil {
					return "", err
				}
				return shortNames(w, "/dir", 12)
			},
			change: func(w *RW) error { return w.WriteFile("/dir/"+longName, newConfig, stamp) },
			state:  created("/dir", "/dir/"+longName, newConfig, names),
		},
		{
			// A leftover fsck file with a long name and several clusters goes away.
			name: "fat16-remove", bits: 16, size: 8 * mib, mkfs: []string{"-s", "1"},
			setup: func(w *RW) (string, error) {
				if err := w.WriteFile("/"+longName, oldConfig, stamp); err != nil {
					return "", err
				}
				return "", w.WriteFile("/sibling", sibling, stamp)
			},
			change: func(w *RW) error { return w.Remove("/" + longName) },
			state: func(fsys *FS, _ string) (string, error) {
				if got, err := fsys.ReadFile("/sibling"); err != nil || !bytes.Equal(got, sibling) {
					return "", fmt.Errorf("sibling: %q, %v", got, err)
				}
				got, err := fsys.ReadFile("/" + longName)
				switch {
				case errors.Is(err, fs.ErrNotExist):
					if list, err := names(fsys, "/"); err != nil || list != "sibling" {
						return "", fmt.Errorf("root lists %q, %v", list, err)
					}
					return "new", nil
				case err != nil:
					return "", err
				case bytes.Equal(got, oldConfig):
					return "old", nil
				}
				return "", fmt.Errorf("%s: %d bytes, not the old %d", longName, len(got), len(oldConfig))
			},
		},
		{
			name: "fat16-mkdir", bits: 16, size: 8 * mib, mkfs: []string{"-s", "1"},
			setup: func(w *RW) (string, error) {
				return "", w.WriteFile("/sibling", sibling, stamp)
			},
			change: func(w *RW) error { return w.MkdirAll("/system-connections/nested", stamp) },
			state: func(fsys *FS, _ string) (string, error) {
				top, err := names(fsys, "/")
				if err != nil {
					return "", err
				}
				switch top {
				case "sibling":
					return "old", nil
				case "sibling,system-connections":
				default:
					return "", fmt.Errorf("root lists %q", top)
				}
				sub, err := names(fsys, "/system-connections")
				switch {
				case err != nil:
					return "", err
				case sub == "":
					return "partial", nil
				case sub != "nested":
					return "", fmt.Errorf("/system-connections lists %q", sub)
				}
				if n, err := names(fsys, "/system-connections/nested"); err != nil || n != "" {
					return "", fmt.Errorf("/system-connections/nested lists %q, %v", n, err)
				}
				return "new", nil
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := makePart(t, tc.bits, tc.off, tc.size, tc.mkfs...)
			before, err := tc.setup(base.open(t))
			if err != nil {
				t.Fatal(err)
			}
			if out, code := base.fsck(t); code != 0 {
				t.Fatalf("fsck.vfat -n before the change: exit %d:\n%s", code, out)
			}
			src, err := os.Open(base.img)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			seen := map[string]int{}
			reports := map[string]bool{}
			for budget := 0; ; budget++ {
				p := base
				p.img = filepath.Join(t.TempDir(), "crash.img")
				f, err := os.Create(p.img)
				if err != nil {
					t.Fatal(err)
				}
				if err := sparseCopy(f, src, 0, base.off+base.size); err != nil {
					t.Fatal(err)
				}
				dev := &powerLoss{f: f, budget: budget}
				w, err := OpenRW(dev, p.off, p.size)
				if err != nil {
					t.Fatal(err)
				}
				changeErr := tc.change(w)
				f.Close()
				done := dev.writes <= budget

				state, err := tc.state(p.read(t), before)
				if err != nil {
					t.Fatalf("power lost after %d sector writes: %v", budget, err)
				}
				seen[state]++
				out, code := p.fsck(t)
				if done {
					if changeErr != nil || state != "new" || code != 0 {
						t.Fatalf("uninterrupted change: %v, state %s, fsck exit %d:\n%s", changeErr, state, code, out)
					}
					var rs []string
					for r := range reports {
						rs = append(rs, r)
					}
					slices.Sort(rs)
					t.Logf("%d sector writes; states after a power loss: %v; fsck reported %q", dev.writes, seen, rs)
					break
				}
				for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
					ok := l == ""
					for i, re := range allowedAfterCrash {
						if re.MatchString(l) {
							ok = true
							if i >= 2 {
								reports[re.String()] = true
							}
						}
					}
					if !ok {
						t.Errorf("power lost after %d of %d sector writes (state %s): fsck.vfat -n reports %q:\n%s", budget, dev.writes, state, l, out)
					}
				}
			}
			if seen["old"] == 0 {
				t.Error("no power loss left the old state")
			}
		})
	}
}

// replaced is the state check of a file replacement: the file holds exactly the old or the new bytes and its
// sibling is untouched.
func replaced(name string, old, new, sibling []byte) func(*FS, string) (string, error) {
	return func(fsys *FS, _ string) (string, error) {
		if got, err := fsys.ReadFile("/sibling"); err != nil || !bytes.Equal(got, sibling) {
			return "", fmt.Errorf("sibling: %q, %v", got, err)
		}
		got, err := fsys.ReadFile(name)
		switch {
		case err != nil:
			return "", err
		case bytes.Equal(got, old):
			return "old", nil
		case bytes.Equal(got, new):
			return "new", nil
		}
		return "", fmt.Errorf("%s: %d bytes, neither the old %d nor the new %d", name, len(got), len(old), len(new))
	}
}

// created is the state check of a file creation: the directory lists exactly what it did, or that and the
// new file, which then holds the new bytes; never an 8.3 alias without its long name.
func created(dir, name string, data []byte, names func(*FS, string) (string, error)) func(*FS, string) (string, error) {
	return func(fsys *FS, before string) (string, error) {
		list, err := names(fsys, dir)
		switch {
		case err != nil:
			return "", err
		case list == before:
			return "old", nil
		case list != before+","+filepath.Base(name):
			return "", fmt.Errorf("%s lists %q", dir, list)
		}
		if got, err := fsys.ReadFile(name); err != nil || !bytes.Equal(got, data) {
			return "", fmt.Errorf("%s: %d bytes, %v", name, len(got), err)
		}
		return "new", nil
	}
}

// TestWriteFileReusesDeletedEntries checks that a new name goes into the first run of deleted entries that
// holds it, here the ones left by mdel removing a long-named file.
func TestWriteFileReusesDeletedEntries(t *testing.T) {
	needTools(t, "mkfs.vfat", "fsck.vfat", "mcopy", "mdir", "mdel")
	p := makePart(t, 16, 0, 16*mib)
	want := map[string][]byte{
		"first.txt":                             []byte("1"),
		"a rather long file name to delete.txt": []byte("2"),
		"last.txt":                              []byte("3"),
	}
	for _, name := range []string{"first.txt", "a rather long file name to delete.txt", "last.txt"} {
		if err := Copy(context.Background(), p.img, p.off, []File{{Dst: "/" + name, Data: want[name]}}, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	tool(t, "mdel", "-i", p.drive(), "::/a rather long file name to delete.txt")
	delete(want, "a rather long file name to delete.txt")
	w := p.open(t)
	d, err := w.openDir("/")
	if err != nil {
		t.Fatal(err)
	}
	_, before := w.decodeDir(d.b)
	if err := w.WriteFile("/new long name.txt", []byte("new"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	want["new long name.txt"] = []byte("new")
	if d, err = w.openDir("/"); err != nil {
		t.Fatal(err)
	}
	es, at := w.decodeDir(d.b)
	for i, e := range es {
		// Label, first.txt (1 entry), then the hole of 4 entries: 2 long-name slots and the 8.3 entry fit.
		if e.Name == "new long name.txt" && (at[i] >= before[len(before)-1] || at[i] != 4*dirEntrySize) {
			t.Errorf("new entry at byte %d; the hole starts at %d and last.txt is at %d", at[i], 2*dirEntrySize, before[len(before)-1])
		}
	}
	p.verify(t, w, want, nil, nil)
}

// TestWriteFileEndMarker checks that entries left past the end-of-directory marker stay invisible to the
// reader when a new entry takes the marker's place.
func TestWriteFileEndMarker(t *testing.T) {
	needTools(t, "mkfs.vfat")
	p := makePart(t, 12, 0, mib, "-s", "1")
	w := p.open(t)
	// The root holds the label; plant an entry two places after the end marker.
	garbage := pad83("GARBAGE", "TXT")
	f, err := os.OpenFile(p.img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(garbage[:], w.rootOff+3*dirEntrySize); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile("/A.TXT", []byte("a"), time.Time{}); err != nil { // entry 1
		t.Fatal(err)
	}
	if err := w.WriteFile("/B.TXT", []byte("b"), time.Time{}); err != nil { // entry 2; entry 3 must be cleared
		t.Fatal(err)
	}
	es, err := p.read(t).ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name)
	}
	if !slices.Equal(names, []string{"A.TXT", "B.TXT"}) {
		t.Errorf("root lists %q, want A.TXT and B.TXT", names)
	}
	b := make([]byte, dirEntrySize)
	if _, err := f.ReadAt(b, w.rootOff+3*dirEntrySize); err != nil || b[0] != 0 {
		t.Errorf("entry after the new ones: %q, %v; want an end marker", b, err)
	}
}

// failing is a Device whose writes fail after a number of successful ones.
type failing struct {
	*os.File
	left int
}

func (d *failing) WriteAt(b []byte, off int64) (int, error) {
	if d.left <= 0 {
		return 0, errors.New("injected write error")
	}
	d.left--
	return d.File.WriteAt(b, off)
}

// TestWriteErrorReloads checks that after a failed write the writer continues from what the device holds.
func TestWriteErrorReloads(t *testing.T) {
	needTools(t, "mkfs.vfat", "fsck.vfat", "mcopy", "mdir")
	p := makePart(t, 32, 0, 40*mib, "-s", "1")
	f, err := os.OpenFile(p.img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dev := &failing{File: f, left: 1 << 30}
	w, err := OpenRW(dev, p.off, p.size)
	if err != nil {
		t.Fatal(err)
	}
	old := randomBytes(t, 3000)
	if err := w.WriteFile("/config.json", old, time.Time{}); err != nil {
		t.Fatal(err)
	}
	dev.left = 2 // the data and the first FAT land, the second FAT copy fails
	if err := w.WriteFile("/config.json", randomBytes(t, 5000), time.Time{}); err == nil {
		t.Fatal("WriteFile succeeded through a failing device")
	}
	fresh, err := OpenRW(f, p.off, p.size)
	if err != nil {
		t.Fatal(err)
	}
	if w.Free() != fresh.Free() {
		t.Errorf("after the failure Free() = %d, the device holds %d", w.Free(), fresh.Free())
	}
	dev.left = 1 << 30
	data := randomBytes(t, 7000)
	if err := w.WriteFile("/config.json", data, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, err := p.read(t).ReadFile("/config.json"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("config.json after recovery: %d bytes, %v", len(got), err)
	}
	out, _ := p.fsck(t)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		ok := l == ""
		for _, re := range allowedAfterCrash {
			ok = ok || re.MatchString(l)
		}
		if !ok {
			t.Errorf("fsck.vfat -n reports %q:\n%s", l, out)
		}
	}
}

// TestRemove: a removed file is gone for mtools too, its space is free again, fsck is clean; a missing
// file and a directory are refused.
func TestRemove(t *testing.T) {
	needTools(t, "mkfs.vfat", "fsck.vfat", "mcopy", "mdir")
	p := makePart(t, 16, 0, 8*mib, "-s", "1")
	w := p.open(t)
	stamp := time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)
	free := w.Free()
	for _, n := range []string{"/FSCK0000.REC", "/FSCK0001.REC", "/keep.txt"} {
		if err := w.WriteFile(n, randomBytes(t, 5000), stamp); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.MkdirAll("/dir", stamp); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"/fsck0000.rec", "/FSCK0001.REC"} {
		if err := w.Remove(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Remove("/FSCK0001.REC"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removing a missing file: %v", err)
	}
	if err := w.Remove("/dir"); err == nil {
		t.Error("removed a directory")
	}
	// keep.txt and /dir still hold clusters; the two removed files hold none.
	if got, want := w.Free(), free-w.ClusterSize()*cdiv(5000, w.ClusterSize())-w.ClusterSize(); got != want {
		t.Errorf("free %d, want %d", got, want)
	}
	out, err := exec.Command("mdir", "-b", "-i", p.drive(), "::/").CombinedOutput()
	if err != nil || strings.Contains(strings.ToUpper(string(out)), "FSCK") || !strings.Contains(string(out), "keep.txt") {
		t.Errorf("mdir: %v\n%s", err, out)
	}
	if out, code := p.fsck(t); code != 0 {
		t.Errorf("fsck.vfat -n: exit %d\n%s", code, out)
	}
}
