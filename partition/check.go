package partition

import (
	"errors"
	"fmt"
)

// ErrInvalidTable means a partition table decodes but describes a disk that cannot be: a partition of
// size zero, one that starts inside the table's own sectors or ends past the end of the disk, or two
// partitions sharing a byte. Writing through such a table overwrites the table, another partition or
// nothing at all (past the end of an image file, it grows the file), so every reader refuses it.
var ErrInvalidTable = errors.New("invalid partition table")

// Check verifies the geometry of t on a disk of size bytes: every partition non-empty and sector aligned,
// outside the table's own sectors (the MBR, each logical partition's EBR, the primary and backup GPT),
// inside the disk (and logical partitions inside the extended one), and no two sharing a byte. The error
// wraps ErrInvalidTable and names the first problem found.
func (t *Table) Check(size int64) error {
	if err := t.check(size, layout{}); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTable, err)
	}
	return nil
}

// check verifies t against the table sectors a reader found (l), or, when l is empty, where the writer
// puts them.
func (t *Table) check(size int64, l layout) error {
	ss, err := checkSectorSize(t.SectorSize)
	if err != nil {
		return err
	}
	ssz := int64(ss)
	diskEnd := size / ssz * ssz
	switch t.Kind {
	case MSDOS:
		var outer, logicals []Partition
		for _, p := range t.Partitions {
			if p.Number >= 5 {
				logicals = append(logicals, p)
			} else {
				outer = append(outer, p)
			}
		}
		if t.Extended != nil {
			outer = append(outer, *t.Extended)
		}
		for _, p := range outer {
			if err := checkGeometry(p, ssz, ssz, diskEnd); err != nil {
				return err
			}
		}
		if err := checkOverlap(outer); err != nil {
			return err
		}
		if len(logicals) > 0 && t.Extended == nil {
			return errors.New("logical partitions without an extended partition")
		}
		for _, l := range logicals {
			// Each logical partition has its EBR in a sector of the extended partition before it.
			if err := checkGeometry(l, ssz, t.Extended.Start+ssz, t.Extended.End()); err != nil {
				return fmt.Errorf("logical %w (inside extended partition %d)", err, t.Extended.Number)
			}
		}
		if err := checkOverlap(logicals); err != nil {
			return err
		}
		for _, e := range l.ebrs {
			for _, l := range logicals {
				if e >= l.Start && e < l.End() {
					return fmt.Errorf("partition %d covers the extended boot record at byte %d", l.Number, e)
				}
			}
		}
	case GPT:
		lo, hi := l.usable[0], l.usable[1]
		if lo == 0 && hi == 0 {
			_, first, last, err := gptGeometry(size, ssz)
			if err != nil {
				return err
			}
			lo, hi = first*ssz, (last+1)*ssz
		}
		for _, p := range t.Partitions {
			if err := checkGeometry(p, ssz, lo, min(hi, diskEnd)); err != nil {
				return err
			}
		}
		if err := checkOverlap(t.Partitions); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown table kind %q", t.Kind)
	}
	return nil
}
