//go:build !linux && !darwin

package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
)

// isDevice tells whether a file of mode m is a device node, which Open refuses here with an error.
func isDevice(m fs.FileMode) bool { return m&fs.ModeDevice != 0 }

// deviceGeometry: hostos reads and writes disk devices on Linux and macOS only.
func deviceGeometry(*os.File) (int64, int, error) {
	return 0, 0, fmt.Errorf("disk devices are not supported on %s: %w (write an image file)", runtime.GOOS, errors.ErrUnsupported)
}

// startWriteback does nothing: it is only a hint.
func startWriteback(*os.File, int64, int64) {}

// syncData is the file's Sync.
func syncData(f *os.File) error { return f.Sync() }
