package fat

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"unicode/utf16"
)

// SectorSize is the logical sector size of the file systems Make creates.
const SectorSize = 512

const nFATs = 2

// ErrNoSpace marks files that do not fit the file system.
var ErrNoSpace = errors.New("no space in fat file system")

// Layout is the geometry Make gives a file system of a given type and size. It mirrors the choices of
// mkfs.fat 4.2 for a standalone file system of that size; Make passes them explicitly and checks the result.
type Layout struct {
	Bits        int
	Size        int64 // bytes the file system spans: the partition size rounded down to whole tracks
	ClusterSize int64 // bytes per cluster
	Clusters    int64 // data clusters
	RootEntries int64 // FAT16: fixed root directory entries; 0 on FAT32
	Reserved    int64 // reserved sectors
	FATSectors  int64 // sectors per FAT

	heads, sectorsPerTrack int
}

func cdiv(a, b int64) int64 { return (a + b - 1) / b }

// PlanLayout computes the layout of a FAT16 or FAT32 file system of size bytes (a whole number of KiB).
func PlanLayout(bits int, size int64) (Layout, error) {
	if bits != 16 && bits != 32 {
		return Layout{}, fmt.Errorf("fat%d: only fat16 and fat32 are supported", bits)
	}
	if size <= 0 || size%1024 != 0 {
		return Layout{}, fmt.Errorf("fat%d size %d: not a positive whole number of KiB", bits, size)
	}
	total := size / SectorSize
	if total > 0xffffffff {
		return Layout{}, fmt.Errorf("fat%d size %d: more than 2^32 sectors", bits, size)
	}
	l := Layout{Bits: bits}
	// CHS geometry as mkfs.fat derives it when the device reports none.
	switch {
	case total <= 524288:
		l.heads = 16
		switch {
		case total <= 32768:
			l.heads = 2
		case total <= 65536:
			l.heads = 4
		case total <= 262144:
			l.heads = 8
		}
		l.sectorsPerTrack = 32
		if total <= 4096 {
			l.sectorsPerTrack = 16
		}
	default:
		l.heads = 255
		for _, h := range []int64{16, 32, 64, 128} {
			if total <= h*63*1024 {
				l.heads = int(h)
				break
			}
		}
		l.sectorsPerTrack = 63
	}
	n := total / int64(l.sectorsPerTrack) * int64(l.sectorsPerTrack)
	l.Size = n * SectorSize
	aligned := n > 8192
	align := func(v, cs int64) int64 {
		if !aligned {
			return v
		}
		return (v + cs - 1) / cs * cs
	}
	reserved, rootEntries := int64(1), int64(512)
	if bits == 32 {
		reserved, rootEntries = 32, 0
	}
	rootSectors := cdiv(rootEntries*dirEntrySize, SectorSize)
	try := func(cs int64) (clusters, fatLen int64, ok bool) {
		fatdata := n - align(reserved, cs)
		if bits == 16 {
			fatdata -= align(rootSectors, cs)
		}
		if fatdata <= 0 {
			return 0, 0, false
		}
		entry := int64(bits / 8)
		clusters = (fatdata*SectorSize + nFATs*2*entry) / (cs*SectorSize + nFATs*entry)
		fatLen = align(cdiv((clusters+2)*entry, SectorSize), cs)
		clusters = (fatdata - nFATs*fatLen) / cs
		if clusters <= 0 {
			return 0, 0, false
		}
		maxc := fatLen * SectorSize / entry
		if bits == 16 {
			return clusters, fatLen, clusters <= min(maxc, maxClusters16) && clusters >= 4087
		}
		return clusters, fatLen, clusters <= min(maxc, 268435446) && clusters >= minClusters32
	}
	var cs int64
	if bits == 16 {
		for c := int64(4); c <= 128; c <<= 1 {
			if _, _, ok := try(c); ok {
				cs = c
				break
			}
		}
		if cs == 0 {
			return Layout{}, fmt.Errorf("fat16 size %d KiB: outside what fat16 can hold with 2-64 KiB clusters", size/1024)
		}
	} else {
		switch {
		case total > 32*1024*1024*2:
			cs = 64
		case total > 16*1024*1024*2:
			cs = 32
		case total > 8*1024*1024*2:
			cs = 16
		case total > 260*1024*2:
			cs = 8
		default:
			cs = 1
		}
		if c, _, ok := try(cs); !ok {
			return Layout{}, fmt.Errorf("fat32 size %d KiB: %d clusters of %d bytes, fat32 needs at least %d", size/1024, c, cs*SectorSize, minClusters32)
		}
	}
	clusters, fatLen, _ := try(cs)
	l.ClusterSize = cs * SectorSize
	l.Clusters = clusters
	l.FATSectors = fatLen
	l.Reserved = align(reserved, cs)
	l.RootEntries = align(rootSectors, cs) * (SectorSize / dirEntrySize)
	return l, nil
}

// Capacity is the number of bytes available to files and directories.
func (l Layout) Capacity() int64 { return l.Clusters * l.ClusterSize }

// sizedFile is a destination and its size.
type sizedFile struct {
	dst  []string
	size int64
}

func sizeFiles(files []File) ([]sizedFile, error) {
	out := make([]sizedFile, 0, len(files))
	for _, f := range files {
		parts, err := f.check()
		if err != nil {
			return nil, err
		}
		size := int64(len(f.Data))
		if f.Src != "" {
			fi, err := os.Stat(f.Src)
			if err != nil {
				return nil, fmt.Errorf("boot file %s: %w", f.Dst, err)
			}
			if !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("boot file %s: source %s is not a regular file", f.Dst, f.Src)
			}
			size = fi.Size()
		}
		out = append(out, sizedFile{parts, size})
	}
	return out, nil
}

// need is the number of bytes the files take in a fresh file system of layout l, directories included.
// It errors, wrapping ErrNoSpace, when the fixed FAT16 root directory cannot hold the entries.
func (l Layout) need(files []sizedFile) (int64, error) {
	entries := map[string]int64{"": 1} // directory key -> 32-byte entries; the root holds the volume label
	seen := map[string]bool{}
	var clusters int64
	for _, f := range files {
		dir := ""
		for i, p := range f.dst {
			key := strings.ToLower(path.Join(dir, p))
			if !seen[key] {
				seen[key] = true
				entries[dir] += 1 + slotsFor(p)
				if i < len(f.dst)-1 {
					entries[key] += 2 // "." and ".."
				}
			}
			dir = key
		}
		clusters += cdiv(f.size, l.ClusterSize)
	}
	for dir, n := range entries {
		if dir == "" && l.Bits != 32 {
			if n > l.RootEntries {
				return 0, fmt.Errorf("root directory: %d entries needed, %d available: %w", n, l.RootEntries, ErrNoSpace)
			}
			continue
		}
		clusters += max(1, cdiv(n*dirEntrySize, l.ClusterSize))
	}
	return clusters * l.ClusterSize, nil
}

// slotsFor is the number of long-name entries a name takes besides its 8.3 entry.
func slotsFor(name string) int64 {
	if fitsShort(name) {
		return 0
	}
	return cdiv(int64(len(utf16.Encode([]rune(name)))), 13)
}

// fitsShort reports whether name is stored as a plain 8.3 entry: base and extension each in one case.
func fitsShort(name string) bool {
	base, ext, dot := strings.Cut(name, ".")
	if base == "" || len(base) > 8 || len(ext) > 3 || (dot && ext == "") || strings.Contains(ext, ".") {
		return false
	}
	for _, part := range []string{base, ext} {
		if strings.ToUpper(part) != part && strings.ToLower(part) != part {
			return false
		}
		for _, c := range part {
			if c > 0x7e || c <= ' ' || strings.ContainsRune(`"*+,/:;<=>?[\]|`, c) {
				return false
			}
		}
	}
	return true
}

// Space reports the bytes the files need in a fresh FAT file system of the given type and size (data clusters,
// directories and long names included) and the bytes that file system offers. The files fit when need <= capacity.
func Space(bits int, size int64, files []File) (need, capacity int64, err error) {
	l, err := PlanLayout(bits, size)
	if err != nil {
		return 0, 0, err
	}
	sf, err := sizeFiles(files)
	if err != nil {
		return 0, 0, err
	}
	need, err = l.need(sf)
	if err != nil {
		return 0, 0, err
	}
	return need, l.Capacity(), nil
}

// MinSize is the smallest size, a whole number of MiB, of a FAT file system of the given type that holds the files.
func MinSize(bits int, files []File) (int64, error) {
	if bits != 16 && bits != 32 {
		return 0, fmt.Errorf("fat%d: only fat16 and fat32 are supported", bits)
	}
	sf, err := sizeFiles(files)
	if err != nil {
		return 0, err
	}
	const mib = 1 << 20
	limit := int64(4096) // FAT16 tops out near 4 GiB
	if bits == 32 {
		limit = 2 << 20 // 2 TiB
	}
	needs := map[int64]int64{} // cluster size -> need
	for m := int64(1); m <= limit; m++ {
		l, err := PlanLayout(bits, m*mib)
		if err != nil {
			continue
		}
		n, ok := needs[l.ClusterSize]
		if !ok {
			n, err = l.need(sf)
			if err != nil && !errors.Is(err, ErrNoSpace) {
				return 0, err
			}
			if err != nil {
				n = -1
			}
			needs[l.ClusterSize] = n
		}
		if n >= 0 && n <= l.Capacity() {
			return m * mib, nil
		}
	}
	return 0, fmt.Errorf("fat%d: files need more than the largest file system: %w", bits, ErrNoSpace)
}
