package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

const (
	sbVolumeName      = 0x78
	sbFeatureROCompat = 0x64
	sbChecksum        = 0x3fc
	roCompatCsum      = 0x400 // metadata_csum: the superblock carries a crc32c of itself
	// SuperblockEnd is how many bytes from the start of a filesystem hold its primary superblock.
	SuperblockEnd = superblockOffset + 1024
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SetLabel sets the volume label in the primary superblock held in head, the first SuperblockEnd (or
// more) bytes of an ext4 filesystem, and refreshes the superblock checksum when the filesystem has one.
// It lets a writer label a filesystem image in the same write that makes it valid.
func SetLabel(head []byte, label string) error {
	if len(head) < SuperblockEnd {
		return errors.New("ext4 superblock: short buffer")
	}
	if len(label) > maxLabel {
		return fmt.Errorf("label %q: longer than %d bytes", label, maxLabel)
	}
	sb := head[superblockOffset:SuperblockEnd]
	if binary.LittleEndian.Uint16(sb[sbMagic:]) != magic {
		return errors.New("ext4 superblock: bad magic")
	}
	name := sb[sbVolumeName : sbVolumeName+maxLabel]
	clear(name)
	copy(name, label)
	if binary.LittleEndian.Uint32(sb[sbFeatureROCompat:])&roCompatCsum != 0 {
		// The kernel's crc32c seeded with ~0 and not inverted at the end, which is the complement of
		// the standard (inverted) checksum.
		binary.LittleEndian.PutUint32(sb[sbChecksum:], ^crc32.Checksum(sb[:sbChecksum], castagnoli))
	}
	return nil
}
