package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
	"unicode/utf16"
)

// MaxDepth is the deepest directory nesting the package reads and writes: a directory path has at most
// MaxDepth components ("/EFI/BOOT" has 2), so a file path at most MaxDepth+1. The writer refuses to go
// deeper and Check reports deeper directories, which Walk cannot read.
const MaxDepth = 64

// FAT limits the reader relies on.
const (
	maxClusters12 = 4084  // a FAT with fewer than 4085 clusters is FAT12
	maxClusters16 = 65524 // mkfs.fat's FAT16 maximum
	minClusters32 = 65525 // fewest clusters of a conforming FAT32
	maxDirEntries = 65536 // a directory holds at most this many 32-byte entries
	dirEntrySize  = 32
	attrReadOnly  = 0x01
	attrVolume    = 0x08
	attrDir       = 0x10
	attrLongName  = 0x0f
	ntLowerBase   = 0x08
	ntLowerExt    = 0x10
)

// ErrCorrupt marks a file system whose structures are inconsistent.
var ErrCorrupt = errors.New("corrupt fat file system")

// FS is a read-only FAT12, FAT16 or FAT32 file system. It caches part of the FAT, so one FS must not be
// used from several goroutines at once; its reader must stay open while it is used.
type FS struct {
	r           io.ReaderAt // the file system, offset 0 is its boot sector
	bits        int
	sectorSize  int64
	clusterSize int64
	fatOff      int64 // byte offset of the first FAT
	fatBytes    int64 // size of one FAT
	fats        int64 // FAT copies
	rootOff     int64 // FAT12/16: byte offset of the fixed root directory
	rootEntries int64 // FAT12/16: entries in the fixed root directory
	rootCluster uint32
	dataOff     int64  // byte offset of cluster 2
	clusters    uint32 // data clusters: valid numbers are 2 .. clusters+1
	label       string

	page    []byte // cached FAT page
	pageOff int64
	table   []byte // the whole first FAT while a writer holds it in memory; readFAT then reads it instead
}

// DirEntry describes one file or directory.
type DirEntry struct {
	// Name is the long name, or the 8.3 name (with the case flags applied) when there is none.
	Name string
	// ShortName is the 8.3 alias as stored, for example "LONGFI~1.TXT".
	ShortName string
	IsDir     bool
	Size      int64
	// ModTime is the modification time as stored; FAT keeps no zone, so it is reported as UTC.
	ModTime time.Time

	cluster uint32
}

// Open reads the FAT file system that occupies size bytes at offset off of r.
func Open(r io.ReaderAt, off, size int64) (*FS, error) {
	if off < 0 || size <= 0 {
		return nil, fmt.Errorf("fat file system at offset %d size %d: invalid range", off, size)
	}
	sr := io.NewSectionReader(r, off, size)
	bs := make([]byte, 512)
	if _, err := sr.ReadAt(bs, 0); err != nil {
		return nil, fmt.Errorf("fat boot sector: %w", err)
	}
	f, err := parseBootSector(bs, size)
	if err != nil {
		return nil, err
	}
	f.r = sr
	f.label, err = f.rootLabel()
	if err != nil {
		return nil, err
	}
	if f.label == "" {
		f.label = bpbLabel(bs, f.bits)
	}
	return f, nil
}

func parseBootSector(bs []byte, size int64) (*FS, error) {
	le := binary.LittleEndian
	if bs[510] != 0x55 || bs[511] != 0xaa {
		return nil, fmt.Errorf("fat boot sector: no 0x55aa signature: %w", ErrCorrupt)
	}
	bps := int64(le.Uint16(bs[11:]))
	spc := int64(bs[13])
	reserved := int64(le.Uint16(bs[14:]))
	nfats := int64(bs[16])
	rootEntries := int64(le.Uint16(bs[17:]))
	total := int64(le.Uint16(bs[19:]))
	if total == 0 {
		total = int64(le.Uint32(bs[32:]))
	}
	fatSectors := int64(le.Uint16(bs[22:]))
	fat32 := fatSectors == 0
	if fat32 {
		fatSectors = int64(le.Uint32(bs[36:]))
	}
	switch {
	case bps != 512 && bps != 1024 && bps != 2048 && bps != 4096:
		return nil, fmt.Errorf("fat boot sector: %d bytes per sector: %w", bps, ErrCorrupt)
	case spc == 0 || spc&(spc-1) != 0:
		return nil, fmt.Errorf("fat boot sector: %d sectors per cluster: %w", spc, ErrCorrupt)
	case reserved == 0:
		return nil, fmt.Errorf("fat boot sector: no reserved sectors: %w", ErrCorrupt)
	case nfats == 0:
		return nil, fmt.Errorf("fat boot sector: no fat copies: %w", ErrCorrupt)
	case fatSectors == 0:
		return nil, fmt.Errorf("fat boot sector: fat size 0: %w", ErrCorrupt)
	case fat32 && rootEntries != 0:
		return nil, fmt.Errorf("fat boot sector: fat32 with %d fixed root entries: %w", rootEntries, ErrCorrupt)
	case total*bps > size:
		return nil, fmt.Errorf("fat boot sector: %d sectors of %d bytes exceed the %d-byte partition: %w", total, bps, size, ErrCorrupt)
	}
	rootSectors := (rootEntries*dirEntrySize + bps - 1) / bps
	dataStart := reserved + nfats*fatSectors + rootSectors
	if dataStart >= total {
		return nil, fmt.Errorf("fat boot sector: data area starts at sector %d of %d: %w", dataStart, total, ErrCorrupt)
	}
	clusters := (total - dataStart) / spc
	f := &FS{
		sectorSize:  bps,
		clusterSize: bps * spc,
		fatOff:      reserved * bps,
		fatBytes:    fatSectors * bps,
		fats:        nfats,
		rootOff:     (reserved + nfats*fatSectors) * bps,
		rootEntries: rootEntries,
		dataOff:     dataStart * bps,
	}
	// Like the Linux kernel: a FAT32 boot sector has no 16-bit FAT size; otherwise the cluster count decides.
	switch {
	case fat32:
		f.bits = 32
		f.rootCluster = le.Uint32(bs[44:]) & 0x0fffffff
	case clusters <= maxClusters12:
		f.bits = 12
	default:
		f.bits = 16
	}
	if f.bits != 32 && rootEntries == 0 {
		return nil, fmt.Errorf("fat boot sector: fat%d without root directory: %w", f.bits, ErrCorrupt)
	}
	// A FAT too short for the data area limits the usable clusters.
	if capacity := f.fatBytes*8/int64(f.bits) - 2; clusters > capacity {
		clusters = capacity
	}
	if clusters > 0x0ffffff5 {
		clusters = 0x0ffffff5
	}
	if clusters < 1 {
		return nil, fmt.Errorf("fat boot sector: no data clusters: %w", ErrCorrupt)
	}
	f.clusters = uint32(clusters)
	if fat32 && !f.valid(f.rootCluster) {
		return nil, fmt.Errorf("fat boot sector: root directory cluster %d: %w", f.rootCluster, ErrCorrupt)
	}
	return f, nil
}

// bpbLabel is the label stored in the extended boot parameter block, "" when absent or "NO NAME".
func bpbLabel(bs []byte, bits int) string {
	sig, at := 38, 43
	if bits == 32 {
		sig, at = 66, 71
	}
	if bs[sig] != 0x29 {
		return ""
	}
	l := strings.TrimRight(decodeOEM(bs[at:at+11]), " ")
	if l == "NO NAME" {
		return ""
	}
	return l
}

// Label is the volume label: the root directory's volume entry, else the boot sector's, "" when there is none.
func (f *FS) Label() string { return f.label }

// Bits is the FAT width: 12, 16 or 32.
func (f *FS) Bits() int { return f.bits }

// ClusterSize is the allocation unit in bytes.
func (f *FS) ClusterSize() int64 { return f.clusterSize }

// Clusters is the number of data clusters.
func (f *FS) Clusters() int64 { return int64(f.clusters) }

func (f *FS) valid(c uint32) bool { return c >= 2 && c-2 < f.clusters }

// entrySpan is where the FAT entry of cluster c lives: its byte offset in the FAT and its length in bytes.
// A FAT12 entry shares its 2 bytes with a neighbour.
func entrySpan(bits int, c uint32) (off int64, n int) {
	switch bits {
	case 12:
		return int64(c) + int64(c)/2, 2
	case 16:
		return int64(c) * 2, 2
	default:
		return int64(c) * 4, 4
	}
}

// decodeEntry is the FAT entry of cluster c from the bytes of its span.
func decodeEntry(b []byte, bits int, c uint32) uint32 {
	le := binary.LittleEndian
	switch bits {
	case 12:
		v := uint32(le.Uint16(b))
		if c&1 == 1 {
			return v >> 4
		}
		return v & 0xfff
	case 16:
		return uint32(le.Uint16(b))
	default:
		return le.Uint32(b) & 0x0fffffff
	}
}

// encodeEntry stores v as the FAT entry of cluster c in the bytes of its span, keeping the bits it does not own:
// the neighbour's nibble on FAT12, the reserved top 4 bits on FAT32.
func encodeEntry(b []byte, bits int, c, v uint32) {
	le := binary.LittleEndian
	switch bits {
	case 12:
		old := le.Uint16(b)
		if c&1 == 1 {
			le.PutUint16(b, old&0x000f|uint16(v&0xfff)<<4)
		} else {
			le.PutUint16(b, old&0xf000|uint16(v&0xfff))
		}
	case 16:
		le.PutUint16(b, uint16(v))
	default:
		le.PutUint32(b, le.Uint32(b)&0xf0000000|v&0x0fffffff)
	}
}

// next returns the FAT entry of cluster c.
func (f *FS) next(c uint32) (uint32, error) {
	off, n := entrySpan(f.bits, c)
	var b [4]byte
	if err := f.readFAT(off, b[:n]); err != nil {
		return 0, err
	}
	return decodeEntry(b[:], f.bits, c), nil
}

// readFAT reads bytes of the first FAT through a one-page cache; chains are mostly walked in order.
func (f *FS) readFAT(off int64, b []byte) error {
	const pageSize = 4096
	if off+int64(len(b)) > f.fatBytes {
		return fmt.Errorf("fat entry at byte %d beyond the %d-byte fat: %w", off, f.fatBytes, ErrCorrupt)
	}
	if f.table != nil {
		copy(b, f.table[off:])
		return nil
	}
	for i := range b {
		o := off + int64(i)
		if f.page == nil || o < f.pageOff || o >= f.pageOff+int64(len(f.page)) {
			start := o / pageSize * pageSize
			n := min(int64(pageSize), f.fatBytes-start)
			page := make([]byte, n)
			if _, err := f.r.ReadAt(page, f.fatOff+start); err != nil {
				return fmt.Errorf("fat at byte %d: %w", start, err)
			}
			f.page, f.pageOff = page, start
		}
		b[i] = f.page[o-f.pageOff]
	}
	return nil
}

func (f *FS) isEnd(v uint32) bool {
	switch f.bits {
	case 12:
		return v >= 0xff8
	case 16:
		return v >= 0xfff8
	default:
		return v >= 0x0ffffff8
	}
}

// chain follows the cluster chain from start, stopping after limit clusters when limit > 0.
func (f *FS) chain(start uint32, limit int64) ([]uint32, error) {
	var out []uint32
	c := start
	for {
		if !f.valid(c) {
			return nil, fmt.Errorf("cluster chain from %d: cluster %d out of range: %w", start, c, ErrCorrupt)
		}
		out = append(out, c)
		if int64(len(out)) == limit {
			return out, nil
		}
		if int64(len(out)) > int64(f.clusters) {
			return nil, fmt.Errorf("cluster chain from %d: loop: %w", start, ErrCorrupt)
		}
		n, err := f.next(c)
		if err != nil {
			return nil, err
		}
		if f.isEnd(n) {
			return out, nil
		}
		c = n
	}
}

// readChain reads size bytes from the chain starting at cluster start.
func (f *FS) readChain(start uint32, size int64) ([]byte, error) {
	if size == 0 {
		return []byte{}, nil
	}
	need := (size + f.clusterSize - 1) / f.clusterSize
	if need > int64(f.clusters) {
		return nil, fmt.Errorf("%d bytes need more clusters than the file system has: %w", size, ErrCorrupt)
	}
	cs, err := f.chain(start, need)
	if err != nil {
		return nil, err
	}
	if int64(len(cs)) < need {
		return nil, fmt.Errorf("cluster chain from %d: %d clusters for %d bytes: %w", start, len(cs), size, ErrCorrupt)
	}
	out := make([]byte, size)
	for i, c := range cs {
		lo := int64(i) * f.clusterSize
		hi := min(lo+f.clusterSize, size)
		if _, err := f.r.ReadAt(out[lo:hi], f.dataOff+int64(c-2)*f.clusterSize); err != nil {
			return nil, fmt.Errorf("cluster %d: %w", c, err)
		}
	}
	return out, nil
}

// dirBytes reads the raw entries of the directory at cluster c (0 is the root) and the clusters holding them.
func (f *FS) dirBytes(c uint32) ([]byte, []uint32, error) {
	if c == 0 {
		if f.bits != 32 {
			b := make([]byte, f.rootEntries*dirEntrySize)
			if _, err := f.r.ReadAt(b, f.rootOff); err != nil {
				return nil, nil, fmt.Errorf("root directory: %w", err)
			}
			return b, nil, nil
		}
		c = f.rootCluster
	}
	limit := max(1, maxDirEntries*dirEntrySize/f.clusterSize)
	cs, err := f.chain(c, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("directory at cluster %d: %w", c, err)
	}
	b := make([]byte, int64(len(cs))*f.clusterSize)
	for i, c := range cs {
		if _, err := f.r.ReadAt(b[int64(i)*f.clusterSize:int64(i+1)*f.clusterSize], f.dataOff+int64(c-2)*f.clusterSize); err != nil {
			return nil, nil, fmt.Errorf("directory cluster %d: %w", c, err)
		}
	}
	return b, cs, nil
}

func (f *FS) rootLabel() (string, error) {
	b, _, err := f.dirBytes(0)
	if err != nil {
		return "", err
	}
	for i := 0; i+dirEntrySize <= len(b); i += dirEntrySize {
		e := b[i : i+dirEntrySize]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xe5 || e[11] == attrLongName || e[11]&attrVolume == 0 {
			continue
		}
		return strings.TrimRight(decodeOEM(e[:11]), " "), nil
	}
	return "", nil
}

// longSlot collects the parts of a VFAT long name while its entries are read.
type longSlot struct {
	parts [][]uint16
	next  int // ordinal expected next; 0 when no sequence is open
	sum   byte
}

// entries decodes a directory's entries, without ".", ".." and the volume label.
func (f *FS) entries(c uint32) ([]DirEntry, error) {
	es, _, err := f.entriesClusters(c)
	return es, err
}

// entriesClusters is entries, also returning the clusters the directory occupies.
func (f *FS) entriesClusters(c uint32) ([]DirEntry, []uint32, error) {
	b, cs, err := f.dirBytes(c)
	if err != nil {
		return nil, nil, err
	}
	es, _ := f.decodeDir(b)
	return es, cs, nil
}

// decodeDir decodes the raw entries b of a directory, without ".", ".." and the volume label, and returns with
// each the byte offset of its 8.3 entry in b.
func (f *FS) decodeDir(b []byte) ([]DirEntry, []int) {
	le := binary.LittleEndian
	var out []DirEntry
	var at []int
	var ln longSlot
	for i := 0; i+dirEntrySize <= len(b); i += dirEntrySize {
		e := b[i : i+dirEntrySize]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xe5 {
			ln = longSlot{}
			continue
		}
		attr := e[11]
		if attr&0x3f == attrLongName {
			ln.add(e)
			continue
		}
		long := ln.name(e[:11])
		ln = longSlot{}
		if attr&attrVolume != 0 {
			continue
		}
		short := shortName(e)
		if short == "." || short == ".." {
			continue
		}
		d := DirEntry{
			Name:      long,
			ShortName: short,
			IsDir:     attr&attrDir != 0,
			Size:      int64(le.Uint32(e[28:])),
			ModTime:   fatTime(le.Uint16(e[24:]), le.Uint16(e[22:])),
			cluster:   uint32(le.Uint16(e[26:])),
		}
		if f.bits == 32 {
			d.cluster |= uint32(le.Uint16(e[20:])) << 16
		}
		if d.Name == "" {
			d.Name = caseName(e)
		}
		if d.IsDir {
			d.Size = 0
		}
		out = append(out, d)
		at = append(at, i)
	}
	return out, at
}

// lfnChars are the byte ranges of a long-name entry holding its 13 UTF-16 code units.
var lfnChars = [3][2]int{{1, 11}, {14, 26}, {28, 32}}

func (l *longSlot) add(e []byte) {
	ord := int(e[0] & 0x1f)
	if e[0]&0x40 != 0 {
		if ord == 0 {
			*l = longSlot{}
			return
		}
		*l = longSlot{parts: make([][]uint16, ord), next: ord, sum: e[13]}
	}
	if l.next == 0 || ord != l.next || e[13] != l.sum {
		*l = longSlot{}
		return
	}
	le := binary.LittleEndian
	var u []uint16
	for _, r := range lfnChars {
		for j := r[0]; j < r[1]; j += 2 {
			u = append(u, le.Uint16(e[j:]))
		}
	}
	l.parts[ord-1] = u
	l.next--
}

// name is the long name if a complete sequence with a matching checksum precedes the short entry.
func (l *longSlot) name(short []byte) string {
	if l.parts == nil || l.next != 0 || checksum(short) != l.sum {
		return ""
	}
	var u []uint16
	for _, p := range l.parts {
		u = append(u, p...)
	}
	for i, c := range u {
		if c == 0 {
			u = u[:i]
			break
		}
	}
	return string(utf16.Decode(u))
}

func checksum(short []byte) byte {
	var s byte
	for _, c := range short[:11] {
		s = (s>>1 | s<<7) + c
	}
	return s
}

// decodeOEM maps OEM bytes to runes: ASCII as is, other bytes to U+0080..U+00FF (no code page is applied).
func decodeOEM(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

func shortParts(e []byte) (base, ext string) {
	n := append([]byte(nil), e[:11]...)
	if n[0] == 0x05 {
		n[0] = 0xe5
	}
	return strings.TrimRight(decodeOEM(n[:8]), " "), strings.TrimRight(decodeOEM(n[8:11]), " ")
}

func shortName(e []byte) string {
	base, ext := shortParts(e)
	if ext == "" {
		return base
	}
	return base + "." + ext
}

// caseName applies the Windows NT lower-case flags to the 8.3 name.
func caseName(e []byte) string {
	base, ext := shortParts(e)
	if e[12]&ntLowerBase != 0 {
		base = strings.ToLower(base)
	}
	if e[12]&ntLowerExt != 0 {
		ext = strings.ToLower(ext)
	}
	if ext == "" {
		return base
	}
	return base + "." + ext
}

func fatTime(date, tm uint16) time.Time {
	if date == 0 {
		return time.Time{}
	}
	return time.Date(1980+int(date>>9), time.Month(date>>5&0x0f), int(date&0x1f),
		int(tm>>11), int(tm>>5&0x3f), int(tm&0x1f)*2, 0, time.UTC)
}

// match reports whether name names e, compared case-insensitively with the long name and the 8.3 alias.
func (e DirEntry) match(name string) bool {
	return strings.EqualFold(e.Name, name) || strings.EqualFold(e.ShortName, name)
}

// clean splits an absolute or relative path into its components.
func clean(name string) ([]string, error) {
	p := path.Clean("/" + name)
	if p == "/" {
		return nil, nil
	}
	parts := strings.Split(p[1:], "/")
	for _, s := range parts {
		if s == ".." {
			return nil, fmt.Errorf("%s: path leaves the file system", name)
		}
	}
	return parts, nil
}

// Stat describes the file or directory at name; the root is a directory named "".
func (f *FS) Stat(name string) (DirEntry, error) {
	parts, err := clean(name)
	if err != nil {
		return DirEntry{}, err
	}
	cur := DirEntry{IsDir: true}
	for i, p := range parts {
		if !cur.IsDir {
			return DirEntry{}, fmt.Errorf("%s: %s is not a directory: %w", name, strings.Join(parts[:i], "/"), fs.ErrNotExist)
		}
		es, err := f.entries(cur.cluster)
		if err != nil {
			return DirEntry{}, fmt.Errorf("%s: %w", name, err)
		}
		found := false
		for _, e := range es {
			if e.match(p) {
				cur, found = e, true
				break
			}
		}
		if !found {
			return DirEntry{}, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		if cur.IsDir && cur.cluster == 0 {
			return DirEntry{}, fmt.Errorf("%s: directory without a cluster: %w", name, ErrCorrupt)
		}
	}
	return cur, nil
}

// ReadFile returns the contents of the file at name (for example "/EFI/BOOT/grubenv"), looked up case-insensitively.
func (f *FS) ReadFile(name string) ([]byte, error) {
	e, err := f.Stat(name)
	if err != nil {
		return nil, err
	}
	if e.IsDir {
		return nil, fmt.Errorf("%s: is a directory", name)
	}
	if e.Size == 0 {
		return []byte{}, nil
	}
	b, err := f.readChain(e.cluster, e.Size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

// ReadDir lists the directory at name in on-disk order, without "." and "..".
func (f *FS) ReadDir(name string) ([]DirEntry, error) {
	e, err := f.Stat(name)
	if err != nil {
		return nil, err
	}
	if !e.IsDir {
		return nil, fmt.Errorf("%s: not a directory", name)
	}
	es, err := f.entries(e.cluster)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return es, nil
}

// Walk calls fn for every file and directory, sorted by path (byte order); paths are relative, without a leading slash.
// Directories are listed before fn is first called, so a corrupt directory fails Walk before any call.
func (f *FS) Walk(fn func(path string, e DirEntry) error) error {
	type item struct {
		path string
		e    DirEntry
	}
	var all []item
	// A cluster belongs to one directory at most: this stops cycles and bounds the work by the file system size.
	used := map[uint32]bool{}
	var walk func(dir string, c uint32, depth int) error
	walk = func(dir string, c uint32, depth int) error {
		if depth > MaxDepth {
			return fmt.Errorf("%s: directories nested deeper than %d: %w", dir, MaxDepth, ErrCorrupt)
		}
		es, cs, err := f.entriesClusters(c)
		if err != nil {
			return fmt.Errorf("/%s: %w", dir, err)
		}
		for _, c := range cs {
			if used[c] {
				return fmt.Errorf("/%s: directory cluster %d used twice: %w", dir, c, ErrCorrupt)
			}
			used[c] = true
		}
		for _, e := range es {
			p := path.Join(dir, e.Name)
			all = append(all, item{p, e})
			if !e.IsDir {
				continue
			}
			if e.cluster == 0 {
				return fmt.Errorf("%s: directory without a cluster: %w", p, ErrCorrupt)
			}
			if err := walk(p, e.cluster, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk("", 0, 0); err != nil {
		return err
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].path < all[j].path })
	for _, it := range all {
		if err := fn(it.path, it.e); err != nil {
			return err
		}
	}
	return nil
}
