package probe

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
)

func TestFilesystem(t *testing.T) {
	const m = partition.MiB
	tests := []struct {
		name      string
		size      int64
		format    func(t *testing.T, image string, off, size int64)
		wantType  string
		wantLabel string
	}{
		{"ext4", 32 * m, func(t *testing.T, img string, off, size int64) { mkfsExt4(t, img, off, size, "resin-rootA") }, "ext4", "resin-rootA"},
		{"ext4 16-byte label", 32 * m, func(t *testing.T, img string, off, size int64) { mkfsExt4(t, img, off, size, "abcdefghijklmnop") }, "ext4", "abcdefghijklmnop"},
		{"ext3", 16 * m, func(t *testing.T, img string, off, size int64) { mke2fs(t, img, "ext3", off, size, "old") }, "ext3", "old"},
		{"ext2", 8 * m, func(t *testing.T, img string, off, size int64) { mke2fs(t, img, "ext2", off, size, "older") }, "ext2", "older"},
		{"fat16", 40 * m, func(t *testing.T, img string, off, size int64) { mkfsVfat(t, img, off, size, 16, "resin-boot") }, "vfat", "resin-boot"},
		{"fat16 upper case", 40 * m, func(t *testing.T, img string, off, size int64) { mkfsVfat(t, img, off, size, 16, "RESIN-BOOT") }, "vfat", "RESIN-BOOT"},
		{"fat32", 64 * m, func(t *testing.T, img string, off, size int64) { mkfsVfat(t, img, off, size, 32, "resin-boot") }, "vfat", "resin-boot"},
		{"fat12", 4 * m, func(t *testing.T, img string, off, size int64) { mkfsVfat(t, img, off, size, 12, "FLOPPY") }, "vfat", "FLOPPY"},
		{"fat16 unlabelled", 16 * m, func(t *testing.T, img string, off, size int64) {
			run(t, "", "mkfs.vfat", "-F", "16", "--offset="+itoa(off/512), img, itoa(size/1024))
		}, "vfat", ""},
		{"fat16 relabelled by mlabel", 40 * m, func(t *testing.T, img string, off, size int64) {
			mkfsVfat(t, img, off, size, 16, "resin-boot")
			mlabel(t, img, off, "NEWLABEL")
		}, "vfat", "NEWLABEL"},
		{"fat32 relabelled by mlabel", 64 * m, func(t *testing.T, img string, off, size int64) {
			mkfsVfat(t, img, off, size, 32, "resin-boot")
			mlabel(t, img, off, "FLASH-BOOT")
		}, "vfat", "FLASH-BOOT"},
		{"fat16 stale boot sector label", 40 * m, func(t *testing.T, img string, off, size int64) {
			mkfsVfat(t, img, off, size, 16, "resin-boot")
			overwrite(t, img, off+0x2b, "STALE      ") // the root directory entry stays resin-boot
		}, "vfat", "resin-boot"},
		{"fat32 stale boot sector label", 64 * m, func(t *testing.T, img string, off, size int64) {
			mkfsVfat(t, img, off, size, 32, "resin-boot")
			overwrite(t, img, off+0x47, "STALE      ")
		}, "vfat", "resin-boot"},
		{"unformatted", 8 * m, func(*testing.T, string, int64, int64) {}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The filesystem sits at an offset inside a larger sparse image, between other data.
			const off = 5 * m
			path := filepath.Join(t.TempDir(), "disk.img")
			d, err := disk.Create(path, off+tt.size+m)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			tt.format(t, path, off, tt.size)
			fstype, label, err := Filesystem(d, off, tt.size)
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			if fstype != tt.wantType || label != tt.wantLabel {
				t.Errorf("Probe = %q, %q, want %q, %q", fstype, label, tt.wantType, tt.wantLabel)
			}
			// blkid, the reference prober, must agree.
			b := blkid(t, path, off)
			if b["TYPE"] != fstype || b["LABEL"] != label {
				t.Errorf("blkid sees TYPE=%q LABEL=%q, Probe %q %q", b["TYPE"], b["LABEL"], fstype, label)
			}
		})
	}
}

func TestProbeShortRegion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	d, err := disk.Create(path, 4*partition.MiB)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	mkfsExt4(t, path, 0, 4*partition.MiB, "cut")
	// A region too short for the superblock is not a filesystem, and not an error.
	if fstype, label, err := Filesystem(d, 0, 1500); err != nil || fstype != "" || label != "" {
		t.Errorf("Probe of 1500 bytes = %q, %q, %v, want nothing", fstype, label, err)
	}
	if fstype, _, err := Filesystem(d, 0, 4*partition.MiB); err != nil || fstype != "ext4" {
		t.Errorf("Probe of the whole filesystem = %q, %v, want ext4", fstype, err)
	}
	if _, _, err := Filesystem(d, -1, 10); err == nil {
		t.Error("Probe at a negative offset succeeded")
	}
}

// overwrite writes s at off of the image.

func TestLocate(t *testing.T) {
	type want struct {
		labels   []string
		number   int    // 0 means an error is expected
		errIs    error  // the error must wrap this, when set
		contains string // the error must say this, when set
	}
	tests := []struct {
		name   string
		kind   partition.Kind
		labels []string // filesystem label of each part in layout order; "" leaves it unformatted
		finds  []want
	}{
		{"balena msdos, old upper-case boot label", partition.MSDOS,
			[]string{"RESIN-BOOT", "resin-rootA", "resin-rootB", "resin-state", "resin-data"},
			[]want{
				{labels: []string{"resin-boot"}, number: 1},
				{labels: []string{"balena-boot", "resin-boot"}, number: 1},
				{labels: []string{"resin-rootB"}, number: 3},
				{labels: []string{"resin-state"}, number: 5},
				{labels: []string{"resin-data"}, number: 6},
				{labels: []string{"RESIN-DATA"}, number: 6},
				{labels: []string{"flash-boot"}, errIs: ErrNotFound},
			}},
		{"msdos duplicates", partition.MSDOS,
			[]string{"resin-boot", "RESIN-BOOT", "dup", "", "dup"},
			[]want{
				{labels: []string{"resin-boot"}, number: 1}, // exact beats case-insensitive
				{labels: []string{"RESIN-BOOT"}, number: 2},
				{labels: []string{"Resin-Boot"}, contains: "partitions 1, 2"},
				{labels: []string{"dup"}, contains: "partitions 3, 6"},
				{labels: []string{"nothing", "dup"}, contains: "partitions 3, 6"},
			}},
		{"gpt names and labels", partition.GPT,
			[]string{"RESIN-BOOT", "resin-rootA", "", "", "resin-data"},
			[]want{
				{labels: []string{"resin-boot"}, number: 1},  // the partition.GPT name matches exactly
				{labels: []string{"resin-rootB"}, number: 3}, // unformatted: found by partition.GPT name alone
				{labels: []string{"resin-state"}, number: 4},
				{labels: []string{"resin-data"}, number: 5},
				{labels: []string{"balena-data"}, errIs: ErrNotFound},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, path, _ := planAndWrite(t, partition.Layout{Kind: tt.kind, Alignment: 4 * partition.MiB, Parts: balenaParts(), Seed: []byte(tt.name)})
			for i, p := range tab.Partitions {
				switch l := tt.labels[i]; {
				case l == "":
				case i == 0:
					mkfsVfat(t, path, p.Start, p.Size, 16, l)
				default:
					mkfsExt4(t, path, p.Start, p.Size, l)
				}
			}
			d, err := disk.Open(path, false)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			read, err := partition.Read(d, d.Size(), d.SectorSize())
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.finds {
				for _, table := range []*partition.Table{read, nil} {
					p, err := Locate(d, table, w.labels...)
					if w.number != 0 {
						if err != nil || p.Number != w.number {
							t.Errorf("Locate(%q) = partition %d, %v, want %d", w.labels, p.Number, err, w.number)
						}
						if want, _ := tab.Partition(w.number); err == nil && (p.Start != want.Start || p.Size != want.Size) {
							t.Errorf("Locate(%q) = [%d, +%d), want [%d, +%d)", w.labels, p.Start, p.Size, want.Start, want.Size)
						}
						continue
					}
					if err == nil {
						t.Errorf("Locate(%q) = partition %d, want an error", w.labels, p.Number)
						continue
					}
					if w.errIs != nil && !errors.Is(err, w.errIs) {
						t.Errorf("Locate(%q) = %v, want %v", w.labels, err, w.errIs)
					}
					if w.errIs == nil && errors.Is(err, ErrNotFound) {
						t.Errorf("Locate(%q) = %v, want an error other than not found", w.labels, err)
					}
					if !strings.Contains(err.Error(), w.contains) {
						t.Errorf("Locate(%q) = %v, want it to say %q", w.labels, err, w.contains)
					}
				}
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestLocateRefusesInvalidTable: nothing is located through a table whose partitions overlap.
func TestLocateRefusesInvalidTable(t *testing.T) {
	_, path, _ := planAndWrite(t, partition.Layout{Kind: partition.MSDOS, Alignment: 4 * partition.MiB, Parts: balenaParts(), Seed: []byte("x")})
	// Partition 2 (rootA) grown over partition 3.
	overwrite(t, path, 446+16+12, "\x00\x00\x20\x00")
	d, err := disk.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := Locate(d, nil, "resin-rootA"); !errors.Is(err, partition.ErrInvalidTable) {
		t.Errorf("Locate: %v, want ErrInvalidTable", err)
	}
}
