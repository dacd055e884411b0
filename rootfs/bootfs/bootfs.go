// Package bootfs is the boot partition as a set of files: a FAT file system inside a disk, or the
// partition mounted as a directory on a running device.
package bootfs

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/fat"
	"github.com/hostos/hostos/rootfs/probe"
)

// FS is what configuring and updating need of a boot partition. Names are absolute slash paths
// ("/config.json"). WriteFile replaces a file so that an interruption leaves the old or the new
// content, never a mix; a missing file is reported with an error wrapping fs.ErrNotExist.
type FS interface {
	ReadFile(name string) ([]byte, error)
	WriteFile(name string, data []byte, mtime time.Time) error
	MkdirAll(name string, mtime time.Time) error
	// Remove deletes the regular file name; an interruption leaves it there or gone.
	Remove(name string) error
	// Free is the space left for new file data, in bytes.
	Free() int64
	// BlockSize is the unit files are allocated in: a new file of n bytes takes n rounded up to it.
	BlockSize() int64
	// ModTime is the modification time of name.
	ModTime(name string) (time.Time, error)
}

// Locate finds the boot partition of d as balena's tools do: by label (exact, then ignoring case for old
// RESIN-BOOT images), else the first FAT partition holding /device-type.json, else partition 1.
// A nil t reads the partition table from d.
func Locate(d disk.Disk, t *partition.Table) (partition.Partition, error) {
	if t == nil {
		var err error
		if t, err = partition.Read(d, d.Size(), d.SectorSize()); err != nil {
			return partition.Partition{}, err
		}
	}
	p, err := probe.Locate(d, t, partition.Boot.ImageLabels()...)
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, probe.ErrNotFound) {
		return p, err
	}
	for _, p := range t.Partitions {
		if f, err := fat.Open(d, p.Start, p.Size); err == nil {
			if _, err := f.ReadFile("/device-type.json"); err == nil {
				return p, nil
			}
		}
	}
	if p, ok := t.Partition(1); ok {
		return p, nil
	}
	return partition.Partition{}, fmt.Errorf("no boot partition: no partition labelled resin-boot, none holding device-type.json and no partition 1")
}

// fatFS adapts a writable FAT file system to FS.
type fatFS struct{ *fat.RW }

func (f fatFS) BlockSize() int64 { return f.ClusterSize() }

func (f fatFS) ModTime(name string) (time.Time, error) {
	e, err := f.Stat(name)
	if err != nil {
		return time.Time{}, err
	}
	return e.ModTime, nil
}

// Open reads d's partition table, finds the boot partition with Locate and opens its FAT.
func Open(d disk.Disk) (*partition.Table, partition.Partition, FS, error) {
	t, err := partition.Read(d, d.Size(), d.SectorSize())
	if err != nil {
		return nil, partition.Partition{}, nil, err
	}
	boot, err := Locate(d, t)
	if err != nil {
		return nil, partition.Partition{}, nil, err
	}
	f, err := OpenFAT(d, boot)
	if err != nil {
		return nil, partition.Partition{}, nil, fmt.Errorf("boot partition: %w", err)
	}
	return t, boot, f, nil
}

// OpenFAT opens the FAT file system of partition p of d for reading and writing.
func OpenFAT(d disk.Disk, p partition.Partition) (FS, error) {
	rw, err := fat.OpenRW(d, p.Start, p.Size)
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", p.Number, err)
	}
	return fatFS{rw}, nil
}

// List returns the regular files of a boot file system as sorted slash paths without a leading slash.
func List(f FS) ([]string, error) {
	switch f := f.(type) {
	case fatFS:
		var files []string
		err := f.Walk(func(p string, e fat.DirEntry) error {
			if !e.IsDir {
				files = append(files, p)
			}
			return nil
		})
		return files, err
	case Dir:
		return f.list()
	}
	return nil, fmt.Errorf("list files: unsupported boot file system %T", f)
}

// Change is a file about to be written: its new size, and the size of the file it replaces (-1: new).
type Change struct {
	Name    string
	Size    int64
	OldSize int64
	NewDir  bool // its directory does not exist yet
}

// Fits checks, before anything is written, that changes applied in order fit on f: each replacement
// needs room for its new copy while the old one still exists, and the old copy's space comes back after.
func Fits(f FS, changes []Change) error {
	bs := f.BlockSize()
	if bs <= 0 {
		bs = 512
	}
	round := func(n int64) int64 { return (n + bs - 1) / bs * bs }
	free := f.Free()
	for _, c := range changes {
		need := round(c.Size)
		if c.OldSize < 0 {
			need += bs // the directory may have to grow by one block
		}
		if c.NewDir {
			need += bs
		}
		if need > free {
			return fmt.Errorf("boot partition full: %s needs %d bytes, %d free", strings.TrimPrefix(c.Name, "/"), need, max(free, 0))
		}
		free -= need
		if c.OldSize > 0 {
			free += round(c.OldSize)
		}
	}
	return nil
}
