package disk

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// cloneFile makes out share in's blocks (a reflink, FICLONE) where the filesystem can.
func cloneFile(out, in *os.File) error { return unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) }

// copyFileRange copies up to n bytes at off from in to out at the same offset in the kernel.
func copyFileRange(out, in *os.File, off, n int64) (int, error) {
	src, dst := off, off
	return unix.CopyFileRange(int(in.Fd()), &src, int(out.Fd()), &dst, int(n), 0)
}

// cfrUnsupported tells whether a copy_file_range error means the call cannot
// be used between these files at all.
func cfrUnsupported(err error) bool {
	return errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)
}

// PunchHole deallocates bytes [off, off+n) of f, which then read as zeros; the size stays
// (fallocate PUNCH_HOLE|KEEP_SIZE). Callers write zeros instead when it fails.
func PunchHole(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}
