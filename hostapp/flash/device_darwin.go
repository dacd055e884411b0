package flash

import (
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/hostos/hostos/partition/disk"
)

// isDevice tells whether a file of mode m is a disk device Flash writes: /dev/diskN (block) or
// /dev/rdiskN (raw, character, the faster one).
func isDevice(m fs.FileMode) bool { return m&fs.ModeDevice != 0 }

// openDevice opens the disk device for writing. The safety checks read Linux's sysfs and mount table, so
// on macOS a device is only written with WithForce, after the user has checked it with diskutil.
func openDevice(device string, _ fs.FileInfo, o options) (*os.File, error) {
	if !o.force {
		return nil, fmt.Errorf("device %s: %w: hostos checks whether a disk is mounted, holds the system or is removable on Linux only; check it with diskutil list, unmount it with diskutil unmountDisk", device, ErrUnchecked)
	}
	f, err := os.OpenFile(device, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", device, err)
	}
	if err := disk.TryLock(f, false); err != nil {
		f.Close()
		return nil, fmt.Errorf("device %s: %w", device, disk.ErrBusy)
	}
	return f, nil
}

// startWriteback does nothing: macOS has no sync_file_range.
func startWriteback(*os.File, int64, int64) {}

// dropCache makes the next reads of f bypass the cache (F_NOCACHE); f was synced.
func dropCache(f *os.File, _ bool) (string, error) {
	if _, err := unix.FcntlInt(f.Fd(), unix.F_NOCACHE, 1); err != nil {
		return "", err
	}
	return "fsync and F_NOCACHE", nil
}
