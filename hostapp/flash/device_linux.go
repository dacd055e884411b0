package flash

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/hostos/hostos/partition/disk"
)

// isDevice tells whether a file of mode m is a disk device Flash writes: a block device.
func isDevice(m fs.FileMode) bool { return m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0 }

// openDevice opens the block device for writing after the safety checks (unless forced), exclusively, so
// that the kernel refuses one with a mounted filesystem, and flocked against another hostos.
func openDevice(device string, fi fs.FileInfo, o options) (*os.File, error) {
	st := fi.Sys().(*syscall.Stat_t)
	if !o.force {
		if err := checkDevice(o.sys, device, unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(device, os.O_RDWR|unix.O_EXCL|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("device %s: %w: the kernel refuses to share it (a filesystem on it is mounted)", device, ErrMounted)
		}
		return nil, fmt.Errorf("device %s: %w", device, err)
	}
	if err := disk.TryLock(f, false); err != nil {
		f.Close()
		return nil, fmt.Errorf("device %s: %w", device, disk.ErrBusy)
	}
	return f, nil
}

// startWriteback starts writing [off, off+n) of f back without waiting (sync_file_range), so the final
// sync has little left and the page cache does not fill with the whole image.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// dropCache makes the next reads of f come from the device: cached pages are written (f was synced) and
// dropped.
func dropCache(f *os.File, isDev bool) (string, error) {
	fd := int(f.Fd())
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		return "", err
	}
	if isDev {
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKFLSBUF, 0); e != 0 {
			return "", e
		}
		return "fsync, fadvise DONTNEED and BLKFLSBUF", nil
	}
	return "fsync and fadvise DONTNEED", nil
}
