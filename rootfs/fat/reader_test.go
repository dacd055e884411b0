package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"unicode/utf16"
)

// tinyFAT12 builds a 32 KiB FAT12 file system by hand: label, a file with a VFAT long name, a directory
// holding a file with NT lower-case flags, and a two-cluster file.
func tinyFAT12() []byte {
	const bps, total = 512, 64
	b := make([]byte, bps*total)
	le := binary.LittleEndian
	copy(b[0:], []byte{0xeb, 0x3c, 0x90})
	copy(b[3:], "HANDMADE")
	le.PutUint16(b[11:], bps)
	b[13] = 1                // sectors per cluster
	le.PutUint16(b[14:], 1)  // reserved
	b[16] = 2                // FATs
	le.PutUint16(b[17:], 16) // root entries
	le.PutUint16(b[19:], total)
	b[21] = 0xf8
	le.PutUint16(b[22:], 1) // sectors per FAT
	b[38] = 0x29
	copy(b[43:], "BPB LABEL  ")
	copy(b[54:], "FAT12   ")
	b[510], b[511] = 0x55, 0xaa
	// FAT12: 2 and 3 are the long-named file's chain, 4 the directory, 5 the file inside it.
	fat := []uint16{0xff8, 0xfff, 3, 0xfff, 0xfff, 0xfff}
	for _, off := range []int{bps, 2 * bps} {
		for c, v := range fat {
			o := off + c + c/2
			if c&1 == 0 {
				b[o] = byte(v)
				b[o+1] = b[o+1]&0xf0 | byte(v>>8)
			} else {
				b[o] = b[o]&0x0f | byte(v<<4)
				b[o+1] = byte(v >> 4)
			}
		}
	}
	root := b[3*bps : 4*bps]
	data := func(c int) []byte { return b[(4+c-2)*bps : (5+c-2)*bps] }
	entry := func(dst []byte, name string, attr, nt byte, cluster uint16, size uint32) {
		copy(dst, name)
		dst[11], dst[12] = attr, nt
		le.PutUint16(dst[24:], 0x5885) // 2024-04-05
		le.PutUint16(dst[26:], cluster)
		le.PutUint32(dst[28:], size)
	}
	entry(root[0:], "HANDMADE   ", attrVolume, 0, 0, 0)
	short := []byte("HELLOW~1TXT")
	long := utf16.Encode([]rune("Hello World.txt"))
	long = append(long, 0)
	for len(long)%13 != 0 {
		long = append(long, 0xffff)
	}
	n := len(long) / 13
	for i := range n {
		ord := n - i
		e := root[32*(1+i) : 32*(2+i)]
		e[0] = byte(ord)
		if i == 0 {
			e[0] |= 0x40
		}
		e[11], e[13] = attrLongName, checksum(short)
		part := long[(ord-1)*13 : ord*13]
		k := 0
		for _, r := range [][2]int{{1, 11}, {14, 26}, {28, 32}} {
			for j := r[0]; j < r[1]; j += 2 {
				le.PutUint16(e[j:], part[k])
				k++
			}
		}
	}
	entry(root[32*(1+n):], string(short), 0, 0, 2, 700)
	entry(root[32*(2+n):], "SUB        ", attrDir, 0, 4, 0)
	for i := range 700 {
		if i < bps {
			data(2)[i] = byte(i)
		} else {
			data(3)[i-bps] = byte(i)
		}
	}
	entry(data(4)[0:], ".          ", attrDir, 0, 4, 0)
	entry(data(4)[32:], "..         ", attrDir, 0, 0, 0)
	entry(data(4)[64:], "README  TXT", 0, ntLowerBase|ntLowerExt, 5, 5)
	copy(data(5), "hello")
	return b
}

func TestReadHandmade(t *testing.T) {
	img := tinyFAT12()
	fsys, err := Open(bytes.NewReader(img), 0, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if fsys.Bits() != 12 || fsys.Label() != "HANDMADE" {
		t.Errorf("Bits %d, Label %q; want 12, HANDMADE", fsys.Bits(), fsys.Label())
	}
	got, err := fsys.ReadFile("/hello world.TXT")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 700 || got[699] != byte(699%256) || got[511] != 255 {
		t.Errorf("two-cluster file read wrong: %d bytes", len(got))
	}
	if got, err := fsys.ReadFile("HELLOW~1.TXT"); err != nil || len(got) != 700 {
		t.Errorf("lookup by 8.3 alias: %v", err)
	}
	es, err := fsys.ReadDir("sub")
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Name != "readme.txt" || es[0].ShortName != "README.TXT" || es[0].Size != 5 {
		t.Errorf("ReadDir(sub) = %+v", es)
	}
	if es[0].ModTime.Year() != 2024 || es[0].ModTime.Month() != 4 || es[0].ModTime.Day() != 5 {
		t.Errorf("ModTime = %v", es[0].ModTime)
	}
	var paths []string
	if err := fsys.Walk(func(p string, e DirEntry) error { paths = append(paths, p); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"Hello World.txt", "SUB", "SUB/readme.txt"}; !equalStrings(paths, want) {
		t.Errorf("Walk paths %q, want %q", paths, want)
	}

	// Damage: a bad long-name checksum falls back to the 8.3 name; the BPB label is used without a volume entry.
	bad := bytes.Clone(img)
	bad[3*512+32+13] ^= 0xff
	bad[3*512] = 0xe5
	fsys, err = Open(bytes.NewReader(bad), 0, int64(len(bad)))
	if err != nil {
		t.Fatal(err)
	}
	if fsys.Label() != "BPB LABEL" {
		t.Errorf("Label without a volume entry = %q, want the BPB's", fsys.Label())
	}
	if _, err := fsys.ReadFile("/Hello World.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("long name with a bad checksum still found: %v", err)
	}
	if _, err := fsys.ReadFile("/HELLOW~1.TXT"); err != nil {
		t.Errorf("8.3 name after a bad checksum: %v", err)
	}

	// A directory chain that loops is an error, not a hang: cluster 4 (SUB) points at itself.
	loop := bytes.Clone(img)
	for _, off := range []int{512, 1024} {
		loop[off+6] = 0x04
		loop[off+7] &= 0xf0
	}
	fsys, err = Open(bytes.NewReader(loop), 0, int64(len(loop)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.ReadDir("/SUB"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("looping directory chain: %v, want ErrCorrupt", err)
	}
	if err := fsys.Walk(func(string, DirEntry) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Walk over a looping directory chain: %v, want ErrCorrupt", err)
	}
	if got, err := fsys.ReadFile("/Hello World.txt"); err != nil || len(got) != 700 {
		t.Errorf("file beside the damage: %v", err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOpenRejects(t *testing.T) {
	good := tinyFAT12()
	for _, tc := range []struct {
		name   string
		mutate func(b []byte) []byte
	}{
		{"no signature", func(b []byte) []byte { b[510] = 0; return b }},
		{"sector size", func(b []byte) []byte { b[11], b[12] = 0, 3; return b }},
		{"cluster size", func(b []byte) []byte { b[13] = 3; return b }},
		{"no fats", func(b []byte) []byte { b[16] = 0; return b }},
		{"larger than partition", func(b []byte) []byte { return b[:len(b)-512] }},
		{"short read", func(b []byte) []byte { return b[:100] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(bytes.Clone(good))
			if _, err := Open(bytes.NewReader(b), 0, int64(len(b))); err == nil {
				t.Error("Open accepted a damaged boot sector")
			}
		})
	}
}

// fuzzSeeds are small file systems to mutate: the handmade one and, where the tools exist, mkfs.vfat's.
func fuzzSeeds(f *testing.F) [][]byte {
	seeds := [][]byte{tinyFAT12()}
	if _, err := exec.LookPath("mkfs.vfat"); err != nil {
		return seeds
	}
	if _, err := exec.LookPath("mcopy"); err != nil {
		return seeds
	}
	dir := f.TempDir()
	// FAT12 with a long-named file in a subdirectory.
	img12 := filepath.Join(dir, "seed12.img")
	host := filepath.Join(dir, "A long file name.txt")
	if err := os.WriteFile(host, bytes.Repeat([]byte("seed"), 300), 0o644); err != nil {
		f.Fatal(err)
	}
	tool(f, "mkfs.vfat", "-F", "12", "-n", "SEED12", "-C", img12, "64")
	tool(f, "mmd", "-i", img12, "::/Sub Dir")
	tool(f, "mcopy", "-i", img12, host, "::/Sub Dir/")
	// A FAT32 boot sector and root chain, forced small (mtools would take it for FAT12, so it stays empty).
	img32 := filepath.Join(dir, "seed32.img")
	tool(f, "mkfs.vfat", "-F", "32", "-s", "1", "-n", "SEED32", "-C", img32, "64")
	for _, p := range []string{img12, img32} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

func FuzzOpen(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fsys, err := Open(bytes.NewReader(b), 0, int64(len(b)))
		if err != nil {
			return
		}
		_ = fsys.Label()
		_, _ = fsys.ReadDir("/")
		_, _ = fsys.ReadFile("/Sub Dir/A long file name.txt")
		reads := 0
		_ = fsys.Walk(func(p string, e DirEntry) error {
			if !e.IsDir && reads < 20 {
				reads++
				data, err := fsys.ReadFile(p)
				if err == nil && int64(len(data)) != e.Size {
					t.Errorf("%s: read %d bytes, entry says %d", p, len(data), e.Size)
				}
			}
			return nil
		})
	})
}
