package fat

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// Limits and on-disk constants the writer adds to the reader's.
const (
	attrArchive = 0x20
	maxFileSize = 0xffffffff // a directory entry holds a 32-bit size
	eoc12       = 0xfff
	eoc16       = 0xffff
	eoc32       = 0x0fffffff
	// FAT32 FSInfo sector: its signatures, and at fsinfoFree the free-cluster count and next-free hint.
	fsinfoLead   = 0x41615252
	fsinfoStruct = 0x61417272
	fsinfoTrail  = 0xaa550000
	fsinfoFree   = 488
)

// Device is what the writer needs from a disk: partition/disk.File (and block devices) satisfy it.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// RW is a FAT file system opened for writing. It embeds *FS, so ReadFile, Stat, ReadDir, Walk, Label and Bits
// work on it and see its own writes. It keeps the first FAT in memory (and no more than that) and, like FS,
// must not be used from several goroutines at once.
//
// Every change is ordered so that a power loss at any point leaves the old or the new state, assuming only
// that a single sector write is atomic: new data goes to free clusters, which are chained in every FAT copy
// and synced before one write of one directory entry commits the change; only then is the old chain freed.
// A new name's long-name entries are synced before its 8.3 entry, and a directory's new cluster is zeroed
// and linked, and synced, before entries go into it, so the order holds on devices that reorder writes
// between syncs. An interrupted change can leave lost clusters, FAT copies that differ in unreferenced
// clusters, orphan long-name entries or a stale FAT32 free-cluster count, never a torn or cross-linked file.
// One limit remains on FAT12, whose 12-bit entries can straddle a sector boundary (one cluster in 512 with
// 512-byte sectors): a write to such an entry is not atomic, which matters when it extends a directory.
type RW struct {
	*FS
	dev    Device
	off    int64   // byte offset of the file system on dev
	size   int64   // bytes of dev the file system may occupy from off; nothing is written outside
	fats   int64   // FAT copies
	free   int64   // free clusters
	low    uint32  // no cluster below this one is free
	dirty  []span  // byte ranges of the in-memory FAT not yet written to the FAT copies
	fsinfo int64   // FAT32: byte offset of the FSInfo sector, 0 when there is none
	hint   [8]byte // FSInfo free count and next-free hint as stored
	stale  []span  // byte ranges where a FAT copy differs from the first FAT, as found on opening
	wrote  bool    // the current change has written to the device or the in-memory FAT
	broken error   // a failed change whose state could not be reloaded
}

// span is a byte range [lo, hi).
type span struct{ lo, hi int64 }

// OpenRW opens the FAT file system occupying size bytes at offset off of dev for writing. It walks every
// directory and chain once first and refuses, with an error wrapping ErrCorrupt that names the files and
// the cluster, a file system where a write could overwrite a file: cross-linked or looping chains, chains
// holding free, reserved, bad or out-of-range values (see Check and Repair). Lost clusters, differing FAT
// copies, orphan long names and a stale free count, which an interrupted write leaves, are accepted.
func OpenRW(dev Device, off, size int64) (*RW, error) {
	w, err := openRW(dev, off, size)
	if err != nil {
		return nil, err
	}
	if err := w.consistent(); err != nil {
		return nil, err
	}
	return w, nil
}

// openRW opens the file system for writing without judging it.
func openRW(dev Device, off, size int64) (*RW, error) {
	f, err := Open(dev, off, size)
	if err != nil {
		return nil, err
	}
	w := &RW{FS: f, dev: dev, off: off, size: size, fats: f.fats}
	if w.fsinfo, w.hint, err = f.fsinfo(); err != nil {
		return nil, err
	}
	if err := w.load(); err != nil {
		return nil, err
	}
	return w, nil
}

// consistent walks the file system and refuses it when a write could overwrite a file.
func (w *RW) consistent() error {
	s, err := w.scan(w.table)
	if err != nil {
		return err
	}
	if fd := s.unsafe(); fd != nil {
		return fmt.Errorf("fat file system: %s: writing could destroy a file; run hostos repair or fsck.vfat: %w", fd.Message, ErrCorrupt)
	}
	return nil
}

// load reads the first FAT into memory and counts the free clusters.
func (w *RW) load() error {
	w.table, w.page, w.dirty = nil, nil, nil
	t := make([]byte, w.fatBytes)
	if _, err := w.r.ReadAt(t, w.fatOff); err != nil {
		return fmt.Errorf("fat: %w", err)
	}
	w.table = t
	w.free, w.low = 0, 0
	for c := uint32(2); c < w.clusters+2; c++ {
		if w.get(c) == 0 {
			if w.free == 0 {
				w.low = c
			}
			w.free++
		}
	}
	if w.free == 0 {
		w.low = w.clusters + 2
	}
	return w.compareCopies()
}

// compareCopies finds where the other FAT copies differ from the first (balena-image-fs, for one, writes
// only the first). Before its first change the writer makes them equal again, as fsck would: every reader
// uses the first FAT, so the copies are brought to it, never the other way.
func (w *RW) compareCopies() error {
	w.stale = nil
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	for i := int64(1); i < w.fats; i++ {
		for lo := int64(0); lo < w.fatBytes; lo += chunk {
			n := min(chunk, w.fatBytes-lo)
			if _, err := w.r.ReadAt(buf[:n], w.fatOff+i*w.fatBytes+lo); err != nil {
				return fmt.Errorf("fat copy %d: %w", i+1, err)
			}
			for s := int64(0); s < n; s += w.sectorSize {
				e := min(s+w.sectorSize, n)
				if !bytes.Equal(buf[s:e], w.table[lo+s:lo+e]) {
					w.stale = append(w.stale, span{lo + s, lo + e})
				}
			}
		}
	}
	return nil
}

// mirror copies the first FAT over the differing sectors of the other copies and syncs.
func (w *RW) mirror() error {
	if len(w.stale) == 0 {
		return nil
	}
	w.wrote = true
	for i := int64(1); i < w.fats; i++ {
		for _, s := range w.stale {
			if err := w.writeAt(w.table[s.lo:s.hi], w.fatOff+i*w.fatBytes+s.lo); err != nil {
				return fmt.Errorf("fat copy %d: %w", i+1, err)
			}
		}
	}
	if err := w.sync(); err != nil {
		return err
	}
	w.stale = nil
	return nil
}

// Free returns the free bytes (free clusters * cluster size).
func (w *RW) Free() int64 { return w.free * w.clusterSize }

func (w *RW) get(c uint32) uint32 {
	off, n := entrySpan(w.bits, c)
	return decodeEntry(w.table[off:off+int64(n)], w.bits, c)
}

// put sets the FAT entry of c in memory, keeping the free count; flushFAT writes it to the device.
func (w *RW) put(c, v uint32) {
	was := w.get(c)
	off, n := entrySpan(w.bits, c)
	encodeEntry(w.table[off:off+int64(n)], w.bits, c, v)
	w.dirty = append(w.dirty, span{off, off + int64(n)})
	w.wrote = true
	switch {
	case was != 0 && v == 0:
		w.free++
		w.low = min(w.low, c)
	case was == 0 && v != 0:
		w.free--
		for w.low < w.clusters+2 && w.get(w.low) != 0 {
			w.low++
		}
	}
}

func (w *RW) eoc() uint32 {
	switch w.bits {
	case 12:
		return eoc12
	case 16:
		return eoc16
	default:
		return eoc32
	}
}

// lowest returns the n lowest-numbered free clusters; the caller has checked that there are that many.
func (w *RW) lowest(n int64) []uint32 {
	out := make([]uint32, 0, n)
	for c := w.low; int64(len(out)) < n && c < w.clusters+2; c++ {
		if w.get(c) == 0 {
			out = append(out, c)
		}
	}
	return out
}

// link chains clusters cs in order, the last one ending the chain.
func (w *RW) link(cs []uint32) {
	for i, c := range cs {
		v := w.eoc()
		if i+1 < len(cs) {
			v = cs[i+1]
		}
		w.put(c, v)
	}
}

// writeAt writes b at byte off of the file system, never outside its size.
func (w *RW) writeAt(b []byte, off int64) error {
	if off < 0 || off+int64(len(b)) > w.size {
		return fmt.Errorf("fat file system: write of %d bytes at byte %d outside its %d bytes: %w", len(b), off, w.size, ErrCorrupt)
	}
	w.wrote = true
	if _, err := w.dev.WriteAt(b, w.off+off); err != nil {
		return fmt.Errorf("fat file system at byte %d: %w", off, err)
	}
	return nil
}

func (w *RW) sync() error {
	if err := w.dev.Sync(); err != nil {
		return fmt.Errorf("fat file system: sync: %w", err)
	}
	return nil
}

// flushFAT writes the changed bytes of the in-memory FAT to the first FAT, then to every other copy.
func (w *RW) flushFAT() error {
	slices.SortFunc(w.dirty, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	var runs []span
	for _, s := range w.dirty {
		if k := len(runs) - 1; k >= 0 && s.lo <= runs[k].hi {
			runs[k].hi = max(runs[k].hi, s.hi)
			continue
		}
		runs = append(runs, s)
	}
	for i := range w.fats {
		for _, s := range runs {
			if err := w.writeAt(w.table[s.lo:s.hi], w.fatOff+i*w.fatBytes+s.lo); err != nil {
				return fmt.Errorf("fat copy %d: %w", i+1, err)
			}
		}
	}
	w.dirty = w.dirty[:0]
	return nil
}

// writeFSInfo brings the FAT32 FSInfo free count and next-free hint up to date; it reports whether it wrote.
func (w *RW) writeFSInfo() (bool, error) {
	if w.fsinfo == 0 {
		return false, nil
	}
	var b [8]byte
	le := binary.LittleEndian
	le.PutUint32(b[:], uint32(w.free))
	next := uint32(0xffffffff)
	if w.free > 0 {
		next = w.low
	}
	le.PutUint32(b[4:], next)
	if b == w.hint {
		return false, nil
	}
	if err := w.writeAt(b[:], w.fsinfo+fsinfoFree); err != nil {
		return false, fmt.Errorf("fat fsinfo sector: %w", err)
	}
	w.hint = b
	return true, nil
}

// finish frees the old chain in every FAT copy and updates FSInfo (step 3 of a change). It does not sync:
// nothing the device holds refers to the old chain any more (step 2 was synced), so until the next sync
// a power loss can only leave it lost clusters, which fsck reclaims, and a stale FSInfo hint. The next
// change's first sync, or the caller's sync of the device at the end, makes it durable.
func (w *RW) finish(old []uint32) error {
	for _, c := range old {
		w.put(c, 0)
	}
	if len(old) > 0 {
		if err := w.flushFAT(); err != nil {
			return err
		}
	}
	if _, err := w.writeFSInfo(); err != nil {
		return err
	}
	return nil
}

// change runs fn, one complete change. If fn fails after writing, the in-memory FAT is reloaded from the
// device so that later calls start from what is stored.
func (w *RW) change(fn func() error) error {
	if w.broken != nil {
		return fmt.Errorf("fat file system unusable after an earlier failure: %w", w.broken)
	}
	w.wrote = false
	err := w.mirror()
	if err == nil {
		err = fn()
	}
	if err != nil && w.wrote {
		if lerr := w.load(); lerr != nil {
			w.broken = lerr
		}
	}
	return err
}

// dir is a directory about to change: its raw entries and the clusters holding them.
type dir struct {
	path    string
	cluster uint32   // first cluster as its entries name it: 0 for the root
	b       []byte   // raw entries
	cs      []uint32 // clusters holding b; nil for the fixed FAT12/16 root
}

// openDir reads the directory at p.
func (w *RW) openDir(p string) (*dir, error) {
	e, err := w.Stat(p)
	if err != nil {
		return nil, err
	}
	if !e.IsDir {
		return nil, fmt.Errorf("%s: not a directory: %w", p, fs.ErrNotExist)
	}
	b, cs, err := w.dirBytes(e.cluster)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &dir{path: p, cluster: e.cluster, b: b, cs: cs}, nil
}

// entryOff is the byte offset in the file system of entry i of d.
func (w *RW) entryOff(d *dir, i int) int64 {
	at := int64(i) * dirEntrySize
	if d.cs == nil {
		return w.rootOff + at
	}
	return w.clusterOff(d.cs[at/w.clusterSize]) + at%w.clusterSize
}

func (w *RW) clusterOff(c uint32) int64 { return w.dataOff + int64(c-2)*w.clusterSize }

// taken reports whether an 8.3 name is used by an entry of d (files, directories, ".", ".." and the label).
func (d *dir) taken(raw [11]byte) bool {
	for i := 0; i+dirEntrySize <= len(d.b); i += dirEntrySize {
		e := d.b[i : i+dirEntrySize]
		if e[0] == 0 {
			return false
		}
		if e[0] != 0xe5 && e[11]&0x3f != attrLongName && string(e[:11]) == string(raw[:]) {
			return true
		}
	}
	return false
}

// place finds room for k consecutive entries in d: the index of the first and how many clusters d must grow
// by. Deleted entries before the end marker are reused first-fit; otherwise the entries go at the end.
func (w *RW) place(d *dir, k int) (start int, grow int64, err error) {
	n := len(d.b) / dirEntrySize
	end, run := n, 0 // the end marker; the deleted entries just before it
	for i := range n {
		first := d.b[i*dirEntrySize]
		if first == 0 {
			end = i
			break
		}
		if first != 0xe5 {
			run = 0
			continue
		}
		if run++; run == k {
			return i - k + 1, 0, nil
		}
	}
	start = end - run
	if start+k <= n {
		return start, 0, nil
	}
	if d.cs == nil {
		return 0, 0, fmt.Errorf("%s: root directory full (%d entries): %w", d.path, n, ErrNoSpace)
	}
	grow = cdiv(int64(start+k-n)*dirEntrySize, w.clusterSize)
	if int64(n)+grow*(w.clusterSize/dirEntrySize) > maxDirEntries {
		return 0, 0, fmt.Errorf("%s: directory full (%d entries): %w", d.path, n, ErrNoSpace)
	}
	return start, grow, nil
}

// putTime stores t as a FAT date and time at b[0:4]: time then date, 2-second resolution, clamped to 1980-2107.
func putTime(b []byte, t time.Time) {
	t = t.UTC()
	switch {
	case t.Year() < 1980:
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	case t.Year() > 2107:
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	le := binary.LittleEndian
	le.PutUint16(b, uint16(t.Hour()<<11|t.Minute()<<5|t.Second()/2))
	le.PutUint16(b[2:], uint16((t.Year()-1980)<<9|int(t.Month())<<5|t.Day()))
}

// stamp fills an 8.3 entry's start cluster, size and times (modification, creation and access date).
func (w *RW) stamp(e []byte, cluster uint32, size int64, mtime time.Time) {
	le := binary.LittleEndian
	if w.bits == 32 {
		le.PutUint16(e[20:], uint16(cluster>>16))
	}
	le.PutUint16(e[26:], uint16(cluster))
	le.PutUint32(e[28:], uint32(size))
	putTime(e[22:], mtime)
}

// WriteFile creates or replaces the regular file name (absolute slash path, for example "/config.json") with
// data, stamping mtime (as UTC, FAT keeps no zone) as its modification and, for a new file, creation time.
// Names are matched case-insensitively; the parent directory must exist (fs.ErrNotExist otherwise). A new name
// that fits 8.3 in one case is stored as such, any other gets VFAT long-name entries and a unique 8.3 alias.
// A replacement is copy-on-write: the new content goes to free clusters and one directory entry write switches
// to it, so the device always holds the old or the new file. It fails with ErrNoSpace, before writing
// anything, when the free clusters cannot hold the new copy and any growth of the directory.
func (w *RW) WriteFile(name string, data []byte, mtime time.Time) error {
	parts, err := clean(name)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return fmt.Errorf("%s: is the root directory", name)
	}
	if len(parts)-1 > MaxDepth {
		return fmt.Errorf("%s: directories nested deeper than %d", name, MaxDepth)
	}
	if int64(len(data)) > maxFileSize {
		return fmt.Errorf("%s: %d bytes exceed the fat file size limit", name, len(data))
	}
	base := parts[len(parts)-1]
	d, at, e, err := w.lookup(name, parts)
	if err != nil {
		return err
	}
	if at >= 0 {
		return w.change(func() error { return w.replace(d, at, e, data, mtime) })
	}
	ents, err := nameEntries(base, d.taken)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	n := cdiv(int64(len(data)), w.clusterSize)
	return w.change(func() error {
		return w.create(d, ents, n, int64(len(data)), mtime, func(cs []uint32) (uint32, byte, error) {
			if len(cs) == 0 {
				return 0, attrArchive, nil
			}
			if err := w.writeData(cs, data); err != nil {
				return 0, 0, fmt.Errorf("%s: %w", name, err)
			}
			return cs[0], attrArchive, nil
		})
	})
}

// writeData writes data to the clusters cs, one write per run of consecutive clusters, and chains them.
func (w *RW) writeData(cs []uint32, data []byte) error {
	for i := 0; i < len(cs); {
		j := i + 1
		for j < len(cs) && cs[j] == cs[j-1]+1 {
			j++
		}
		lo := int64(i) * w.clusterSize
		hi := min(int64(j)*w.clusterSize, int64(len(data)))
		if err := w.writeAt(data[lo:hi], w.clusterOff(cs[i])); err != nil {
			return err
		}
		i = j
	}
	w.link(cs)
	return nil
}

// replace gives the existing file e, whose 8.3 entry is at byte at of d, the content data.
func (w *RW) replace(d *dir, at int, e DirEntry, data []byte, mtime time.Time) error {
	name := path.Join(d.path, e.Name)
	var old []uint32
	if e.cluster != 0 {
		var err error
		if old, err = w.chain(e.cluster, 0); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	// The old chain is freed at the end: it must be this file's alone.
	if len(old) > 0 {
		if err := w.consistent(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	n := cdiv(int64(len(data)), w.clusterSize)
	if n > w.free {
		return fmt.Errorf("%s: %d clusters needed, %d free: %w", name, n, w.free, ErrNoSpace)
	}
	// Step 1: the new copy in free clusters, chained in every FAT.
	cs := w.lowest(n)
	var start uint32
	if n > 0 {
		start = cs[0]
		if err := w.writeData(cs, data); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := w.flushFAT(); err != nil {
			return err
		}
		if err := w.sync(); err != nil {
			return err
		}
	}
	// Step 2: one entry write switches to it.
	ent := make([]byte, dirEntrySize)
	copy(ent, d.b[at:])
	w.stamp(ent, start, int64(len(data)), mtime)
	if err := w.writeAt(ent, w.entryOff(d, at/dirEntrySize)); err != nil {
		return fmt.Errorf("%s: directory entry: %w", name, err)
	}
	if err := w.sync(); err != nil {
		return err
	}
	// Step 3: the old copy is garbage.
	return w.finish(old)
}

// create adds the entries ents (long-name slots then the 8.3 entry) to d for a new file or directory of n
// clusters and size bytes. fill writes the content into the n clusters it is given, chains them, and returns
// the start cluster and the attributes.
func (w *RW) create(d *dir, ents [][dirEntrySize]byte, n, size int64, mtime time.Time, fill func(cs []uint32) (uint32, byte, error)) error {
	k := len(ents)
	start, grow, err := w.place(d, k)
	if err != nil {
		return err
	}
	if n+grow > w.free {
		return fmt.Errorf("%s: %d clusters needed, %d free: %w", d.path, n+grow, w.free, ErrNoSpace)
	}
	// Step 1: content and directory growth in free clusters, chained in every FAT.
	cs := w.lowest(n + grow)
	first, attr, err := fill(cs[:n])
	if err != nil {
		return err
	}
	growth := cs[n:]
	if len(growth) > 0 {
		zero := make([]byte, w.clusterSize)
		for _, c := range growth {
			if err := w.writeAt(zero, w.clusterOff(c)); err != nil {
				return fmt.Errorf("%s: new directory cluster: %w", d.path, err)
			}
		}
		w.link(growth)
	}
	if w.wrote {
		if err := w.flushFAT(); err != nil {
			return err
		}
		if err := w.sync(); err != nil {
			return err
		}
	}
	// Step 2: link the growth, then the long-name slots, then the 8.3 entry that makes it visible.
	if len(growth) > 0 {
		w.put(d.cs[len(d.cs)-1], growth[0])
		if err := w.flushFAT(); err != nil {
			return err
		}
		if err := w.sync(); err != nil {
			return err
		}
		d.cs = append(d.cs, growth...)
		d.b = append(d.b, make([]byte, int64(len(growth))*w.clusterSize)...)
	}
	short := ents[k-1]
	short[11] = attr
	w.stamp(short[:], first, size, mtime)
	copy(short[14:18], short[22:26]) // creation time and date
	copy(short[18:20], short[24:26]) // access date
	ents[k-1] = short
	// Entries past the end marker are invisible; the one after ours must read as the new end marker.
	after := start + k
	marker := after*dirEntrySize < len(d.b) && d.b[after*dirEntrySize] != 0 && !w.visible(d, after)
	// When the long-name slots, the 8.3 entry and the end marker share a device sector, one write of that
	// sector makes the file visible whole: no sync between them is needed.
	if b, ok := w.oneSector(d, start, ents, marker); ok {
		if err := w.writeAt(b, w.entryOff(d, start)); err != nil {
			return fmt.Errorf("%s: directory entry: %w", d.path, err)
		}
		if err := w.sync(); err != nil {
			return err
		}
		return w.finish(nil)
	}
	if marker {
		if err := w.writeAt(make([]byte, dirEntrySize), w.entryOff(d, after)); err != nil {
			return fmt.Errorf("%s: directory end marker: %w", d.path, err)
		}
	}
	if k > 1 {
		for i := 0; i < k-1; {
			j := i + 1
			for j < k-1 && w.entryOff(d, start+j) == w.entryOff(d, start+j-1)+dirEntrySize {
				j++
			}
			var b []byte
			for _, e := range ents[i:j] {
				b = append(b, e[:]...)
			}
			if err := w.writeAt(b, w.entryOff(d, start+i)); err != nil {
				return fmt.Errorf("%s: long name entries: %w", d.path, err)
			}
			i = j
		}
		if err := w.sync(); err != nil {
			return err
		}
	}
	if err := w.writeAt(short[:], w.entryOff(d, start+k-1)); err != nil {
		return fmt.Errorf("%s: directory entry: %w", d.path, err)
	}
	if err := w.sync(); err != nil {
		return err
	}
	// Step 3: FSInfo.
	return w.finish(nil)
}

// atomicSector is the unit of a write that a power loss leaves whole or untouched: a 512-byte sector.
const atomicSector = 512

// oneSector returns the bytes of ents, placed from entry start of d on, followed by an end marker when
// marker is set, when they are consecutive on the device and within one atomicSector.
func (w *RW) oneSector(d *dir, start int, ents [][dirEntrySize]byte, marker bool) ([]byte, bool) {
	n := len(ents)
	if marker {
		n++
	}
	lo := w.entryOff(d, start)
	for i := 1; i < n; i++ {
		if w.entryOff(d, start+i) != lo+int64(i)*dirEntrySize {
			return nil, false
		}
	}
	if (w.off+lo)/atomicSector != (w.off+lo+int64(n)*dirEntrySize-1)/atomicSector {
		return nil, false
	}
	b := make([]byte, 0, n*dirEntrySize)
	for _, e := range ents {
		b = append(b, e[:]...)
	}
	if marker {
		b = append(b, make([]byte, dirEntrySize)...)
	}
	return b, true
}

// visible reports whether entry i of d is before the end marker, where readers look.
func (w *RW) visible(d *dir, i int) bool {
	for j := range i {
		if d.b[j*dirEntrySize] == 0 {
			return false
		}
	}
	return true
}

// MkdirAll creates the directory name and any missing parents; existing directories are left as they are.
// Each new directory gets a zeroed cluster holding "." and "..", linked in the FAT and synced before its
// entry is added to the parent.
func (w *RW) MkdirAll(name string, mtime time.Time) error {
	parts, err := clean(name)
	if err != nil {
		return err
	}
	if len(parts) > MaxDepth {
		return fmt.Errorf("%s: directories nested deeper than %d", name, MaxDepth)
	}
	for i, p := range parts {
		sub := "/" + strings.Join(parts[:i+1], "/")
		e, err := w.Stat(sub)
		if err == nil {
			if !e.IsDir {
				return fmt.Errorf("%s: %s is a file", name, sub)
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := w.mkdir("/"+strings.Join(parts[:i], "/"), p, mtime); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// mkdir creates directory base in the existing directory parent.
func (w *RW) mkdir(parent, base string, mtime time.Time) error {
	d, err := w.openDir(parent)
	if err != nil {
		return err
	}
	ents, err := nameEntries(base, d.taken)
	if err != nil {
		return err
	}
	return w.change(func() error {
		return w.create(d, ents, 1, 0, mtime, func(cs []uint32) (uint32, byte, error) {
			c := cs[0]
			b := make([]byte, w.clusterSize)
			for i, n := range []string{".", ".."} {
				e := b[i*dirEntrySize : (i+1)*dirEntrySize]
				raw := pad83(n, "")
				copy(e, raw[:])
				e[11] = attrDir
				target := c
				if n == ".." {
					target = d.cluster
				}
				w.stamp(e, target, 0, mtime)
				copy(e[14:18], e[22:26])
				copy(e[18:20], e[24:26])
			}
			if err := w.writeAt(b, w.clusterOff(c)); err != nil {
				return 0, 0, fmt.Errorf("directory %s/%s: %w", parent, base, err)
			}
			w.link(cs)
			return c, attrDir, nil
		})
	})
}

// Remove deletes the regular file name. The short entry is marked deleted first, in one sector write:
// from then on the file is gone; then its long-name slots are marked, and its clusters freed in every FAT.
// An interruption leaves at most orphan long-name slots or lost clusters.
func (w *RW) Remove(name string) error {
	parts, err := clean(name)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return fmt.Errorf("%s: is the root directory", name)
	}
	d, at, e, err := w.lookup(name, parts)
	if err != nil {
		return err
	}
	if at < 0 {
		return fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return w.change(func() error { return w.remove(d, at, e) })
}

// lookup opens the parent directory of the regular file name (split into parts) and finds its entry:
// at is the entry's byte offset in the directory, -1 when there is no such file.
func (w *RW) lookup(name string, parts []string) (d *dir, at int, e DirEntry, err error) {
	base := parts[len(parts)-1]
	d, err = w.openDir("/" + strings.Join(parts[:len(parts)-1], "/"))
	if err != nil {
		return nil, -1, e, fmt.Errorf("%s: parent directory: %w", name, err)
	}
	es, offs := w.decodeDir(d.b)
	for i, e := range es {
		if !e.match(base) {
			continue
		}
		if e.IsDir {
			return nil, -1, e, fmt.Errorf("%s: is a directory", name)
		}
		return d, offs[i], e, nil
	}
	return d, -1, e, nil
}

func (w *RW) remove(d *dir, at int, e DirEntry) error {
	name := path.Join(d.path, e.Name)
	var old []uint32
	if e.cluster != 0 {
		var err error
		if old, err = w.chain(e.cluster, 0); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	// The old chain is freed at the end: it must be this file's alone.
	if len(old) > 0 {
		if err := w.consistent(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	del := func(off int) error {
		w.wrote = true
		if err := w.writeAt([]byte{0xe5}, w.entryOff(d, off/dirEntrySize)); err != nil {
			return fmt.Errorf("%s: directory entry: %w", name, err)
		}
		d.b[off] = 0xe5
		return nil
	}
	sum := checksum(d.b[at : at+11])
	if err := del(at); err != nil {
		return err
	}
	if err := w.sync(); err != nil {
		return err
	}
	for off := at - dirEntrySize; off >= 0; off -= dirEntrySize {
		s := d.b[off : off+dirEntrySize]
		if s[0] == 0xe5 || s[11]&0x3f != attrLongName || s[13] != sum {
			break
		}
		if err := del(off); err != nil {
			return err
		}
	}
	return w.finish(old)
}
