package ext4

import (
	"os"

	"golang.org/x/sys/unix"
)

// punchHole deallocates bytes [off, off+size) of f, which then read as zeros; the size stays.
func punchHole(f *os.File, off, size int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, size)
}
