package disk

import (
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// isDevice tells whether a file of mode m is a disk device: a block device.
func isDevice(m fs.FileMode) bool { return m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0 }

// deviceGeometry returns the size in bytes and the logical sector size of the block device f.
func deviceGeometry(f *os.File) (int64, int, error) {
	size, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	if err != nil {
		return 0, 0, fmt.Errorf("size of block device: %w", err)
	}
	ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil {
		return 0, 0, fmt.Errorf("sector size of block device: %w", err)
	}
	return int64(size), ss, nil
}

// startWriteback starts writing [off, off+n) of f back without waiting (sync_file_range).
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// syncData is fdatasync: the data and the metadata needed to read it back (size, block allocation).
func syncData(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
