package partition

import (
	"errors"
	"fmt"
)

// ErrNotLast means a partition cannot grow because another partition (or the disk's end) follows it.
var ErrNotLast = errors.New("not the last partition")

// Grow returns a copy of t in which partition n ends at end (a byte offset) on a disk of size bytes. The
// partition must be the last one on the disk; on msdos a logical partition's extended container grows
// with it. A GPT's usable area is recomputed for the new size when the table is written (its backup
// moves to the new end). Grow never shrinks, and the result passes Check for size.
func Grow(t *Table, size int64, n int, end int64) (*Table, error) {
	if t == nil {
		return nil, errors.New("grow partition table: no table")
	}
	p, ok := t.Partition(n)
	if !ok {
		return nil, fmt.Errorf("grow partition %d: no such partition", n)
	}
	if end < p.End() {
		return nil, fmt.Errorf("grow partition %d: new end %d is before its end %d", n, end, p.End())
	}
	for _, q := range t.Partitions {
		if q.Number != n && q.Start >= p.Start {
			return nil, fmt.Errorf("grow partition %d: partition %d follows it: %w", n, q.Number, ErrNotLast)
		}
	}
	g := &Table{Kind: t.Kind, SectorSize: t.SectorSize, DiskSignature: t.DiskSignature, DiskGUID: t.DiskGUID}
	g.Partitions = append([]Partition(nil), t.Partitions...)
	for i := range g.Partitions {
		if g.Partitions[i].Number == n {
			g.Partitions[i].Size = end - p.Start
		}
	}
	if t.Extended != nil {
		ext := *t.Extended
		switch {
		case n >= 5:
			if ext.End() < end {
				ext.Size = end - ext.Start
			}
		case ext.Start >= p.Start:
			return nil, fmt.Errorf("grow partition %d: the extended partition follows it: %w", n, ErrNotLast)
		}
		g.Extended = &ext
	}
	if err := g.Check(size); err != nil {
		return nil, fmt.Errorf("grow partition %d to byte %d of a %d-byte disk: %w", n, end, size, err)
	}
	return g, nil
}
