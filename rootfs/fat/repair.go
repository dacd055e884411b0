package fat

import (
	"errors"
	"fmt"
)

// ErrNotRepaired marks a file system Repair leaves with problems only a person can decide about.
var ErrNotRepaired = errors.New("fat file system not repaired")

// Repair fixes on dev the problems Check finds in the FAT file system of size bytes at offset off that
// can be fixed without choosing between two files' data, and returns Check's reports before and after:
//
//   - orphan long-name entries are marked deleted;
//   - a chain broken by a free, reserved, bad or out-of-range value, or looping, ends at its last good
//     cluster, and the file's size is cut to what the chain holds (a chain broken at its start leaves the
//     file empty), as fsck.vfat -a does;
//   - a chain longer than its file's size is cut to the size, and a size larger than the chain is cut
//     to the chain;
//   - lost clusters are freed, the other FAT copies are made equal to the first, and the FAT32 free
//     count is corrected.
//
// Cross-links are left alone: one of the two files holds the other's data and only a person can tell
// which (copy both off, then delete the wrong one or run fsck.vfat), so they stay in the report after.
// Repair changes nothing and fails with ErrNotRepaired when the first FAT is inconsistent where another
// copy is not: the copy may hold what the first lost, which only an interactive fsck.vfat can choose.
// Each step is ordered as the writer's changes are: a power loss leaves a file system no worse than before.
// A clean file system is not written to.
func Repair(dev Device, off, size int64) (before, after Report, err error) {
	w, err := openRW(dev, off, size)
	if err != nil {
		return before, after, err
	}
	if before, err = w.Check(); err != nil {
		return before, after, err
	}
	if before.Clean() {
		return before, before, nil
	}
	s, err := w.scan(w.table)
	if err != nil {
		return before, after, err
	}
	if err := w.checkCopies(s); err != nil {
		return before, before, err
	}
	if err := w.repairEntries(s); err != nil {
		return before, after, err
	}
	// What the cuts left unreferenced is lost now; lost clusters are known only when every directory was read.
	if s, err = w.scan(w.table); err != nil {
		return before, after, err
	}
	if !s.partial && len(s.lost) > 0 {
		for _, c := range s.lost {
			w.put(c, 0)
		}
		if err := w.flushFAT(); err != nil {
			return before, after, err
		}
		if err := w.sync(); err != nil {
			return before, after, err
		}
	}
	if err := w.mirror(); err != nil {
		return before, after, err
	}
	if wrote, err := w.writeFSInfo(); err != nil {
		return before, after, err
	} else if wrote {
		if err := w.sync(); err != nil {
			return before, after, err
		}
	}
	if after, err = w.Check(); err != nil {
		return before, after, err
	}
	return before, after, nil
}

// checkCopies refuses to repair from a first FAT with broken chains when another FAT copy has none.
func (w *RW) checkCopies(s *scanned) error {
	bad := s.unsafe()
	if bad == nil || len(w.stale) == 0 {
		return nil
	}
	t := make([]byte, w.fatBytes)
	for i := int64(1); i < w.fats; i++ {
		if _, err := w.r.ReadAt(t, w.fatOff+i*w.fatBytes); err != nil {
			return fmt.Errorf("fat copy %d: %w", i+1, err)
		}
		cs, err := w.scan(t)
		if err != nil {
			return err
		}
		if cs.unsafe() == nil {
			return fmt.Errorf("the first fat is inconsistent (%s) where fat copy %d is not: the copy may hold what the first lost; run fsck.vfat without -a to choose: %w",
				bad.Message, i+1, ErrNotRepaired)
		}
	}
	return nil
}

// repairEntries marks orphan long-name entries deleted, then ends broken, looping and overlong chains
// (every FAT copy, synced) and only then shrinks the directory entries to match.
func (w *RW) repairEntries(s *scanned) error {
	for _, at := range s.orphans {
		if err := w.writeAt([]byte{0xe5}, at); err != nil {
			return fmt.Errorf("orphan long name entry: %w", err)
		}
	}
	if len(s.orphans) > 0 {
		if err := w.sync(); err != nil {
			return err
		}
	}
	type fix struct {
		o     *object
		start uint32 // new start cluster
		size  int64  // new size
	}
	var fixes []fix
	for _, o := range s.objs {
		switch o.problem {
		case BadChain, Loop:
			if len(o.chain) > 0 {
				w.put(o.chain[len(o.chain)-1], w.eoc())
			}
			if o.dir || o.entry < 0 {
				continue // a directory keeps size 0; one without a good first cluster stays reported
			}
			n := min(o.size, int64(len(o.chain))*w.clusterSize)
			start := o.start
			if len(o.chain) == 0 {
				start, n = 0, 0
			}
			fixes = append(fixes, fix{o, start, n})
		case "":
			if o.dir {
				continue
			}
			need, have := cdiv(o.size, w.clusterSize), int64(len(o.chain))
			switch {
			case have > need && need > 0:
				w.put(o.chain[need-1], w.eoc())
			case have > need:
				fixes = append(fixes, fix{o, 0, 0})
			case have < need:
				fixes = append(fixes, fix{o, o.start, have * w.clusterSize})
			}
		}
	}
	if len(w.dirty) > 0 {
		if err := w.flushFAT(); err != nil {
			return err
		}
		if err := w.sync(); err != nil {
			return err
		}
	}
	for _, f := range fixes {
		e := make([]byte, dirEntrySize)
		if _, err := w.r.ReadAt(e, f.o.entry); err != nil {
			return fmt.Errorf("%s: directory entry: %w", f.o.path, err)
		}
		le16 := func(b []byte, v uint32) { b[0], b[1] = byte(v), byte(v>>8) }
		if w.bits == 32 {
			le16(e[20:], f.start>>16)
		}
		le16(e[26:], f.start)
		le16(e[28:], uint32(f.size))
		le16(e[30:], uint32(f.size>>16))
		if err := w.writeAt(e, f.o.entry); err != nil {
			return fmt.Errorf("%s: directory entry: %w", f.o.path, err)
		}
	}
	if len(fixes) > 0 {
		return w.sync()
	}
	return nil
}
