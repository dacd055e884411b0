// Package probe reads which filesystem a partition holds and its label, and finds partitions by label as
// balenaOS does: the filesystem side of the layout, kept out of the partition table codecs.
package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Filesystem reads the filesystem type ("vfat", "ext4", "ext3", "ext2", "" unknown) and label of the filesystem at
// [off, off+size). An unknown or unreadable-as-filesystem region is not an error; a failing read is.
// For FAT it prefers the volume-label entry of the root directory over the copy in the boot sector.
func Filesystem(r io.ReaderAt, off, size int64) (fstype, label string, err error) {
	if off < 0 || size < 0 {
		return "", "", fmt.Errorf("probe filesystem: negative offset %d or size %d", off, size)
	}
	sec := io.NewSectionReader(r, off, size)
	sb := make([]byte, 1024)
	if ok, err := readIfPresent(sec, sb, 1024); err != nil {
		return "", "", fmt.Errorf("probe ext superblock at byte %d: %w", off+1024, err)
	} else if ok && binary.LittleEndian.Uint16(sb[56:]) == 0xef53 {
		return extType(sb), cString(sb[120:136]), nil
	}
	label, ok, err := probeFAT(sec)
	if err != nil {
		return "", "", fmt.Errorf("probe fat at byte %d: %w", off, err)
	}
	if ok {
		return "vfat", label, nil
	}
	return "", "", nil
}

// readIfPresent fills p from off; it reports false without error when the region is too short.
func readIfPresent(r io.ReaderAt, p []byte, off int64) (bool, error) {
	err := readFull(r, p, off)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return false, nil
	}
	return err == nil, err
}

// extType tells ext4 from ext3 and ext2 by the features, as blkid does.
func extType(sb []byte) string {
	compat := binary.LittleEndian.Uint32(sb[0x5c:])
	incompat := binary.LittleEndian.Uint32(sb[0x60:])
	roCompat := binary.LittleEndian.Uint32(sb[0x64:])
	const (
		ext3Incompat = 0x2 | 0x4 | 0x8 | 0x10 // filetype, recover, journal_dev, meta_bg
		ext3RoCompat = 0x1 | 0x2 | 0x4        // sparse_super, large_file, btree_dir
		hasJournal   = 0x4
	)
	switch {
	case incompat&^ext3Incompat != 0 || roCompat&^ext3RoCompat != 0:
		return "ext4"
	case compat&hasJournal != 0:
		return "ext3"
	default:
		return "ext2"
	}
}

func cString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func fatLabel(b []byte) string {
	s := []byte(string(b))
	if len(s) > 0 && s[0] == 0x05 { // a name starting with 0xe5 is stored as 0x05
		s[0] = 0xe5
	}
	l := strings.TrimRight(string(s), " \x00")
	if l == "NO NAME" {
		return ""
	}
	return l
}

// maxRootScan bounds the root directory scan (in bytes) so a damaged FAT chain cannot stall Probe.
const maxRootScan = 4 << 20

// probeFAT recognises a FAT boot sector and returns the volume label.
func probeFAT(r io.ReaderAt) (string, bool, error) {
	bs := make([]byte, 512)
	if ok, err := readIfPresent(r, bs, 0); !ok {
		return "", false, err
	}
	bps := int64(binary.LittleEndian.Uint16(bs[11:]))
	spc := int64(bs[13])
	reserved := int64(binary.LittleEndian.Uint16(bs[14:]))
	nfats := int64(bs[16])
	rootEntries := int64(binary.LittleEndian.Uint16(bs[17:]))
	fatSz := int64(binary.LittleEndian.Uint16(bs[22:]))
	fat32 := fatSz == 0
	if fat32 {
		fatSz = int64(binary.LittleEndian.Uint32(bs[36:]))
	}
	media := bs[21]
	switch {
	case bs[0] != 0xeb && bs[0] != 0xe9,
		bps < 512 || bps > 4096 || bps&(bps-1) != 0,
		spc == 0 || spc&(spc-1) != 0,
		reserved == 0, nfats == 0, fatSz == 0,
		media != 0xf0 && media < 0xf8,
		fat32 && rootEntries != 0:
		return "", false, nil
	}
	var bootLabel string
	if fat32 && bs[0x42] == 0x29 {
		bootLabel = fatLabel(bs[0x47:0x52])
	} else if !fat32 && bs[0x26] == 0x29 {
		bootLabel = fatLabel(bs[0x2b:0x36])
	}

	fatStart := reserved * bps
	dataStart := fatStart + nfats*fatSz*bps
	var label string
	var found bool
	var err error
	if !fat32 {
		label, found, _, err = scanDir(r, dataStart, rootEntries*32)
	} else {
		clusterSize := spc * bps
		cluster := int64(binary.LittleEndian.Uint32(bs[44:]) & 0x0fffffff)
		entry := make([]byte, 4)
		for scanned := int64(0); cluster >= 2 && cluster < 0x0ffffff7 && scanned < maxRootScan; scanned += clusterSize {
			var end bool
			label, found, end, err = scanDir(r, dataStart+(cluster-2)*clusterSize, clusterSize)
			if err != nil || found || end {
				break
			}
			ok, rerr := readIfPresent(r, entry, fatStart+cluster*4)
			if rerr != nil || !ok {
				err = rerr
				break
			}
			cluster = int64(binary.LittleEndian.Uint32(entry) & 0x0fffffff)
		}
	}
	if err != nil {
		return "", false, err
	}
	if found {
		return label, true, nil
	}
	return bootLabel, true, nil
}

// scanDir looks for the volume-label entry among the directory entries in [off, off+n). end reports that the
// directory's end marker was reached.
func scanDir(r io.ReaderAt, off, n int64) (label string, found, end bool, err error) {
	n = min(n, maxRootScan)
	buf := make([]byte, n)
	if ok, err := readIfPresent(r, buf, off); !ok {
		return "", false, true, err
	}
	for i := int64(0); i+32 <= n; i += 32 {
		e := buf[i : i+32]
		switch attr := e[11]; {
		case e[0] == 0:
			return "", false, true, nil
		case e[0] == 0xe5, attr&0x3f == 0x0f:
			continue // deleted, or a long-name entry
		case attr&0x18 == 0x08:
			return fatLabel(e[0:11]), true, false, nil
		}
	}
	return "", false, false, nil
}

func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
