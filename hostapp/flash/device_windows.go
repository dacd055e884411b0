package flash

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// openNoBlock: Windows opens no FIFO or terminal through a path that would wait.
const openNoBlock = 0

// isDevice: Go reports no Windows path as a device node; a disk (\\.\PhysicalDriveN) fails to stat.
func isDevice(m fs.FileMode) bool { return m&fs.ModeDevice != 0 }

// openDevice: hostos writes disk devices on Linux and macOS; on Windows it writes image files.
func openDevice(device string, _ fs.FileInfo, _ options) (*os.File, error) {
	return nil, openDeviceErr(device)
}

func openDeviceErr(device string) error {
	return fmt.Errorf("device %s: writing to a disk device is not supported on windows (write an image file): %w", device, errors.ErrUnsupported)
}

// startWriteback does nothing on Windows.
func startWriteback(*os.File, int64, int64) {}

// dropCache: Windows has no call to drop a file's cached pages; the read-back may come from the cache.
func dropCache(*os.File, bool) (string, error) {
	return "fsync only (Windows may serve the read-back from its cache)", nil
}

// refuseRawPath refuses a Win32 device namespace path (\\.\PhysicalDrive1, \\?\...): opened as a file it
// would reach the raw disk without any check.
func refuseRawPath(device string) error {
	p := strings.ReplaceAll(device, "/", `\`)
	if strings.HasPrefix(p, `\\.\`) || strings.HasPrefix(p, `\\?\`) {
		return openDeviceErr(device)
	}
	return nil
}
