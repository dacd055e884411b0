package disk

import (
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// The disk ioctls of macOS's <sys/disk.h>: _IOR('d', 24, uint32_t) and _IOR('d', 25, uint64_t).
const (
	dkiocGetBlockSize  = 0x40046418
	dkiocGetBlockCount = 0x40086419
)

// isDevice tells whether a file of mode m is a disk device: /dev/diskN (block) or /dev/rdiskN (raw,
// character), both of which macOS users write images to.
func isDevice(m fs.FileMode) bool { return m&fs.ModeDevice != 0 }

// deviceGeometry returns the size in bytes and the logical sector size of the disk device f. macOS
// runs little-endian only, so the 32-bit block size read into a zeroed int is exact.
func deviceGeometry(f *os.File) (int64, int, error) {
	ss, err := unix.IoctlGetInt(int(f.Fd()), dkiocGetBlockSize)
	if err != nil {
		return 0, 0, fmt.Errorf("block size of disk device: %w", err)
	}
	count, err := unix.IoctlGetInt(int(f.Fd()), dkiocGetBlockCount)
	if err != nil {
		return 0, 0, fmt.Errorf("block count of disk device: %w", err)
	}
	return int64(count) * int64(ss), ss, nil
}

// startWriteback does nothing: macOS has no sync_file_range, and it is only a hint.
func startWriteback(*os.File, int64, int64) {}

// syncData is the file's Sync (on macOS F_FULLFSYNC, which also flushes the drive's cache).
func syncData(f *os.File) error { return f.Sync() }
