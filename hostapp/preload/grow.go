package preload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/ext4"
)

// growAlign is the balenaOS layout's alignment: partitions grow in steps of it.
const growAlign = 4 << 20

// ErrNotLast means --grow was asked for a data partition that another partition follows.
var ErrNotLast = partition.ErrNotLast

// grow makes the image file d (the work copy) larger and its data partition, the partition table and
// the data partition's ext4 with it, by need bytes and a margin for the metadata of the new block groups,
// in steps of the layout's alignment. Only the table's sectors, the data partition and the new tail
// change. It returns the grown data partition.
func grow(ctx context.Context, d *disk.File, data partition.Partition, need int64, t time.Time) (partition.Partition, error) {
	fi, err := os.Stat(d.Path())
	if err != nil {
		return data, fmt.Errorf("grow: %w", err)
	}
	size := fi.Size()
	tab, err := partition.Read(d, size, d.SectorSize())
	if err != nil {
		return data, fmt.Errorf("grow: %w", err)
	}
	// The table must be written back as it was read, but for the grown entries: hostos's codec must
	// reproduce the table's sectors exactly, or growing would rewrite sectors outside the data partition.
	same := &compareWriter{r: d}
	if err := partition.Write(same, size, tab); err != nil || same.differs {
		return data, fmt.Errorf("grow: the %s partition table is not laid out as hostos writes it (its extended boot records or headers lie elsewhere); grow the image with another tool", tab.Kind)
	}
	delta := need + need/16 + growAlign
	delta = (delta + growAlign - 1) / growAlign * growAlign
	newSize := size + delta
	g, err := partition.Grow(tab, newSize, data.Number, data.End()+delta)
	if errors.Is(err, partition.ErrNotLast) {
		return data, fmt.Errorf("grow: the data partition %d is not the last partition of the image, so it cannot grow: %w", data.Number, err)
	}
	if err != nil {
		return data, fmt.Errorf("grow: %w", err)
	}
	if err := os.Truncate(d.Path(), newSize); err != nil {
		return data, fmt.Errorf("grow: %w", err)
	}
	// What lay after the data partition (a GPT's old backup) is now inside it: cleared.
	if tail := size - data.End(); tail > 0 {
		if err := zeroRange(d, data.End(), tail); err != nil {
			return data, fmt.Errorf("grow: %w", err)
		}
	}
	if err := partition.Write(d, newSize, g); err != nil {
		return data, fmt.Errorf("grow: %w", err)
	}
	data.Size += delta
	if err := ext4.Grow(ctx, d.Path(), data.Start, data.Size, t); err != nil {
		return data, fmt.Errorf("grow: data partition %d: %w", data.Number, err)
	}
	return data, nil
}

// zeroRange zeroes n bytes at off of the work copy, as a hole where the filesystem allows.
func zeroRange(d *disk.File, off, n int64) error {
	f, err := os.OpenFile(d.Path(), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if disk.PunchHole(f, off, n) == nil {
		return nil
	}
	_, err = f.WriteAt(make([]byte, n), off)
	return err
}

// compareWriter takes writes and records whether any differs from what r holds there.
type compareWriter struct {
	r interface {
		ReadAt([]byte, int64) (int, error)
	}
	differs bool
}

func (c *compareWriter) WriteAt(p []byte, off int64) (int, error) {
	have := make([]byte, len(p))
	if n, _ := c.r.ReadAt(have, off); n != len(p) || !bytes.Equal(have, p) {
		c.differs = true
	}
	return len(p), nil
}
