package fat

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path"
)

// Kind is the kind of a problem Check finds.
type Kind string

// The problems Check reports, named after what fsck.vfat says of them.
const (
	// FATsDiffer: a FAT copy differs from the first FAT, which every reader uses.
	FATsDiffer Kind = "fats-differ"
	// CrossLink: two files or directories share a cluster; writing one of them overwrites the other.
	CrossLink Kind = "cross-link"
	// BadChain: a chain holds a free, reserved, bad or out-of-range cluster value, or a directory has no
	// cluster; the file ends early and the allocator may hand its clusters to another file.
	BadChain Kind = "bad-chain"
	// Loop: a chain comes back to one of its own clusters.
	Loop Kind = "loop"
	// SizeMismatch: a file's size does not match the length of its chain.
	SizeMismatch Kind = "size-mismatch"
	// LostClusters: clusters in use in the FAT that no file or directory reaches.
	LostClusters Kind = "lost-clusters"
	// OrphanLongName: long-name entries that belong to no 8.3 entry.
	OrphanLongName Kind = "orphan-long-name"
	// FreeCount: the FAT32 FSInfo free-cluster count is wrong.
	FreeCount Kind = "free-count"
	// TooDeep: directories nested deeper than MaxDepth, which this package does not read.
	TooDeep Kind = "too-deep"
)

// unsafe reports whether a writer must refuse a file system with this problem: freeing or allocating
// clusters there could overwrite a file.
func (k Kind) unsafe() bool { return k == CrossLink || k == BadChain || k == Loop }

// Finding is one problem Check found.
type Finding struct {
	Kind Kind `json:"kind"`
	// Path is the file or directory concerned ("/" for the root), "" for the file system as a whole.
	Path string `json:"path,omitempty"`
	// Other is, for a cross-link, the file or directory that holds the shared cluster too.
	Other string `json:"other,omitempty"`
	// Cluster is the cluster concerned: the shared one, the one holding a bad value, the first lost one.
	Cluster uint32 `json:"cluster,omitempty"`
	// Count is a number of clusters (lost clusters), sectors (FAT copies differ) or entries (orphan long names).
	Count int64 `json:"count,omitempty"`
	// Message says it in one line, as fsck.vfat would.
	Message string `json:"message"`
}

func (f Finding) String() string { return f.Message }

// Report is the result of Check.
type Report struct {
	Bits     int       `json:"bits"`
	Clusters int64     `json:"clusters"` // data clusters
	Free     int64     `json:"free"`     // free clusters in the first FAT
	Files    int       `json:"files"`
	Dirs     int       `json:"dirs"` // the root included
	Findings []Finding `json:"findings"`
}

// Clean reports whether Check found nothing wrong.
func (r Report) Clean() bool { return len(r.Findings) == 0 }

// Check examines the whole file system as fsck.vfat -n does: every directory and chain against the first
// FAT (cross-links, loops, bad values, sizes, depth), the clusters nothing reaches, the other FAT copies,
// orphan long-name entries and the FAT32 free-cluster count. It only reads, and finishes in time linear in
// the size of the FAT and the directories. Problems are findings; the error is for a device that cannot be read.
func (f *FS) Check() (Report, error) {
	t, err := f.fatTable()
	if err != nil {
		return Report{}, err
	}
	s, err := f.scan(t)
	if err != nil {
		return Report{}, err
	}
	r := Report{Bits: f.bits, Clusters: int64(f.clusters), Free: s.free, Files: s.files, Dirs: s.dirs}
	r.Findings = append(r.Findings, s.findings...)
	differ, err := f.copiesDiffer(t)
	if err != nil {
		return Report{}, err
	}
	r.Findings = append(r.Findings, differ...)
	if fc, ok, err := f.freeCountFinding(s.free); err != nil {
		return Report{}, err
	} else if ok {
		r.Findings = append(r.Findings, fc)
	}
	return r, nil
}

// fatTable is the first FAT: the writer's copy in memory, or read whole from the device.
func (f *FS) fatTable() ([]byte, error) {
	if f.table != nil {
		return f.table, nil
	}
	t := make([]byte, f.fatBytes)
	if _, err := f.r.ReadAt(t, f.fatOff); err != nil {
		return nil, fmt.Errorf("fat: %w", err)
	}
	return t, nil
}

// object is a file or directory met by scan, with the clusters of its chain it was first to reach.
type object struct {
	path    string
	dir     bool
	start   uint32
	size    int64
	entry   int64    // byte offset of its 8.3 entry in the file system; -1 for the root
	chain   []uint32 // its chain up to the first problem
	problem Kind     // why the chain walk stopped early: "", CrossLink, BadChain or Loop
}

// scanned is what scan learns of a file system.
type scanned struct {
	objs     []*object
	owner    []int32 // by cluster number: 0 for none, else 1 + index into objs
	findings []Finding
	orphans  []int64 // byte offsets of orphan long-name entries
	lost     []uint32
	partial  bool // some directory was not read (too deep, or without a cluster): lost is not known
	free     int64
	files    int
	dirs     int
}

// unsafe is the first finding a writer must refuse, nil when there is none.
func (s *scanned) unsafe() *Finding {
	for i := range s.findings {
		if s.findings[i].Kind.unsafe() {
			return &s.findings[i]
		}
	}
	return nil
}

func (f *FS) entryIn(t []byte, c uint32) uint32 {
	off, n := entrySpan(f.bits, c)
	if off+int64(n) > int64(len(t)) {
		return 0
	}
	return decodeEntry(t[off:off+int64(n)], f.bits, c)
}

func (f *FS) badMark() uint32 {
	switch f.bits {
	case 12:
		return 0xff7
	case 16:
		return 0xfff7
	default:
		return 0x0ffffff7
	}
}

// describe says what a cluster value that cannot continue a chain is.
func (f *FS) describe(v uint32) string {
	switch {
	case v == 0:
		return "0, which marks a free cluster"
	case v == 1:
		return "reserved value 1"
	case v == f.badMark():
		return fmt.Sprintf("%#x, which marks a bad cluster", v)
	case v > f.clusters+1 && v < f.badMark():
		return fmt.Sprintf("cluster %d, past the last cluster %d", v, f.clusters+1)
	}
	return fmt.Sprintf("value %#x", v)
}

// scan walks every directory and chain once against the FAT t, each cluster claimed by the first file or
// directory to reach it, and lists the problems. The work is bounded by the cluster count: a chain stops at
// the first cluster already claimed, and directories nest at most MaxDepth deep.
func (f *FS) scan(t []byte) (*scanned, error) {
	s := &scanned{owner: make([]int32, int64(f.clusters)+2)}
	add := func(fd Finding) { s.findings = append(s.findings, fd) }
	follow := func(o *object) {
		id := int32(len(s.objs))
		prev, c := uint32(0), o.start
		for {
			if !f.valid(c) {
				o.problem = BadChain
				where := fmt.Sprintf("starts at %s", f.describe(c))
				at := c
				if prev != 0 {
					where = fmt.Sprintf("cluster %d is followed by %s", prev, f.describe(c))
					at = prev
				}
				add(Finding{Kind: BadChain, Path: o.path, Cluster: at, Message: fmt.Sprintf("%s: chain broken: %s", o.path, where)})
				return
			}
			switch own := s.owner[c]; {
			case own == id:
				o.problem = Loop
				add(Finding{Kind: Loop, Path: o.path, Cluster: prev, Message: fmt.Sprintf("%s: chain loops: cluster %d points back to cluster %d", o.path, prev, c)})
				return
			case own != 0:
				o.problem = CrossLink
				other := s.objs[own-1].path
				add(Finding{Kind: CrossLink, Path: o.path, Other: other, Cluster: c,
					Message: fmt.Sprintf("%s and %s share cluster %d (cross-linked)", other, o.path, c)})
				return
			}
			s.owner[c] = id
			o.chain = append(o.chain, c)
			v := f.entryIn(t, c)
			if f.isEnd(v) {
				return
			}
			prev, c = c, v
		}
	}
	// visit claims dir's chain, then its entries' chains, depth first in on-disk order.
	var visit func(o *object, depth int) error
	visit = func(o *object, depth int) error {
		s.dirs++
		var b []byte
		var offs func(i int) int64
		if o.start == 0 && f.bits != 32 {
			b = make([]byte, f.rootEntries*dirEntrySize)
			if _, err := f.r.ReadAt(b, f.rootOff); err != nil {
				return fmt.Errorf("root directory: %w", err)
			}
			offs = func(i int) int64 { return f.rootOff + int64(i) }
		} else {
			s.objs = append(s.objs, o)
			follow(o)
			cs := o.chain
			if limit := max(1, maxDirEntries*dirEntrySize/f.clusterSize); int64(len(cs)) > limit {
				cs = cs[:limit]
			}
			b = make([]byte, int64(len(cs))*f.clusterSize)
			for i, c := range cs {
				if _, err := f.r.ReadAt(b[int64(i)*f.clusterSize:int64(i+1)*f.clusterSize], f.clusterByte(c)); err != nil {
					return fmt.Errorf("%s: directory cluster %d: %w", o.path, c, err)
				}
			}
			offs = func(i int) int64 {
				return f.clusterByte(cs[int64(i)/f.clusterSize]) + int64(i)%f.clusterSize
			}
		}
		if orphans := orphanSlots(b); len(orphans) > 0 {
			for _, i := range orphans {
				s.orphans = append(s.orphans, offs(i))
			}
			add(Finding{Kind: OrphanLongName, Path: o.path, Count: int64(len(orphans)),
				Message: fmt.Sprintf("%s: %s", o.path, plural(int64(len(orphans)), "orphaned long file name entry", "orphaned long file name entries"))})
		}
		es, at := f.decodeDir(b)
		for i, e := range es {
			c := &object{path: path.Join(o.path, e.Name), dir: e.IsDir, start: e.cluster, size: e.Size, entry: offs(at[i])}
			if !e.IsDir {
				s.files++
				if c.start == 0 {
					if c.size > 0 {
						add(Finding{Kind: SizeMismatch, Path: c.path, Message: fmt.Sprintf("%s: file size is %d bytes, but it has no clusters", c.path, c.size)})
					}
					continue
				}
				s.objs = append(s.objs, c)
				follow(c)
				if c.problem != "" {
					continue
				}
				if need := cdiv(c.size, f.clusterSize); int64(len(c.chain)) != need {
					add(Finding{Kind: SizeMismatch, Path: c.path, Cluster: c.start, Message: fmt.Sprintf("%s: file size is %d bytes, cluster chain length is %d bytes",
						c.path, c.size, int64(len(c.chain))*f.clusterSize)})
				}
				continue
			}
			switch {
			case c.start == 0:
				s.dirs++
				s.partial = true
				add(Finding{Kind: BadChain, Path: c.path, Message: fmt.Sprintf("%s: directory without a cluster", c.path)})
			case depth+1 > MaxDepth:
				s.dirs++
				s.partial = true
				add(Finding{Kind: TooDeep, Path: c.path, Message: fmt.Sprintf("%s: directories nested deeper than %d", c.path, MaxDepth)})
			default:
				if err := visit(c, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	root := &object{path: "/", dir: true, entry: -1}
	if f.bits == 32 {
		root.start = f.rootCluster
	}
	if err := visit(root, 0); err != nil {
		return nil, err
	}
	var firstLost uint32
	bad := f.badMark()
	for c := uint32(2); c < f.clusters+2; c++ {
		v := f.entryIn(t, c)
		switch {
		case v == 0:
			s.free++
		case v != bad && s.owner[c] == 0:
			if firstLost == 0 {
				firstLost = c
			}
			s.lost = append(s.lost, c)
		}
	}
	if len(s.lost) > 0 && !s.partial {
		add(Finding{Kind: LostClusters, Cluster: firstLost, Count: int64(len(s.lost)),
			Message: fmt.Sprintf("%s in use that no file or directory reaches (%d bytes), the first %d",
				plural(int64(len(s.lost)), "cluster", "clusters"), int64(len(s.lost))*f.clusterSize, firstLost)})
	}
	return s, nil
}

func (f *FS) clusterByte(c uint32) int64 { return f.dataOff + int64(c-2)*f.clusterSize }

// orphanSlots returns the byte offsets in the directory b of the long-name entries that are not the
// complete long name, with a matching checksum, of the 8.3 entry right after them.
func orphanSlots(b []byte) []int {
	var out, run []int
	var ln longSlot
	for i := 0; i+dirEntrySize <= len(b); i += dirEntrySize {
		e := b[i : i+dirEntrySize]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xe5 {
			out, run, ln = append(out, run...), nil, longSlot{}
			continue
		}
		if e[11]&0x3f == attrLongName {
			if e[0]&0x40 != 0 {
				out, run = append(out, run...), nil
			}
			run = append(run, i)
			ln.add(e)
			if ln.parts == nil {
				out, run = append(out, run...), nil
			}
			continue
		}
		if len(run) > 0 && ln.name(e[:11]) == "" {
			out = append(out, run...)
		}
		run, ln = nil, longSlot{}
	}
	return append(out, run...)
}

// copiesDiffer compares every other FAT copy with the first, t.
func (f *FS) copiesDiffer(t []byte) ([]Finding, error) {
	var out []Finding
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	for i := int64(1); i < f.fats; i++ {
		n := int64(0)
		for lo := int64(0); lo < f.fatBytes; lo += chunk {
			m := min(chunk, f.fatBytes-lo)
			if _, err := f.r.ReadAt(buf[:m], f.fatOff+i*f.fatBytes+lo); err != nil {
				return nil, fmt.Errorf("fat copy %d: %w", i+1, err)
			}
			for s := int64(0); s < m; s += f.sectorSize {
				e := min(s+f.sectorSize, m)
				if !bytes.Equal(buf[s:e], t[lo+s:lo+e]) {
					n++
				}
			}
		}
		if n > 0 {
			out = append(out, Finding{Kind: FATsDiffer, Count: n, Message: fmt.Sprintf("fat copy %d differs from the first fat in %s", i+1, plural(n, "sector", "sectors"))})
		}
	}
	return out, nil
}

// fsinfo locates a valid FAT32 FSInfo sector in the reserved area: its byte offset (0 when there is none
// or it is damaged) and its free count and next-free hint as stored.
func (f *FS) fsinfo() (int64, [8]byte, error) {
	var hint [8]byte
	if f.bits != 32 {
		return 0, hint, nil
	}
	bs := make([]byte, 512)
	if _, err := f.r.ReadAt(bs, 0); err != nil {
		return 0, hint, fmt.Errorf("fat boot sector: %w", err)
	}
	le := binary.LittleEndian
	s := int64(le.Uint16(bs[48:]))
	if s == 0 || s == 0xffff || (s+1)*f.sectorSize > f.fatOff {
		return 0, hint, nil
	}
	b := make([]byte, 512)
	if _, err := f.r.ReadAt(b, s*f.sectorSize); err != nil {
		return 0, hint, fmt.Errorf("fat fsinfo sector: %w", err)
	}
	if le.Uint32(b) != fsinfoLead || le.Uint32(b[484:]) != fsinfoStruct || le.Uint32(b[508:]) != fsinfoTrail {
		return 0, hint, nil
	}
	copy(hint[:], b[fsinfoFree:])
	return s * f.sectorSize, hint, nil
}

// freeCountFinding reports a FAT32 FSInfo free-cluster count that is set and differs from free.
func (f *FS) freeCountFinding(free int64) (Finding, bool, error) {
	at, hint, err := f.fsinfo()
	if err != nil || at == 0 {
		return Finding{}, false, err
	}
	stored := binary.LittleEndian.Uint32(hint[:])
	if stored == 0xffffffff || int64(stored) == free {
		return Finding{}, false, nil
	}
	return Finding{Kind: FreeCount, Count: int64(stored), Message: fmt.Sprintf("free cluster summary wrong (%d vs. really %d)", stored, free)}, true, nil
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
