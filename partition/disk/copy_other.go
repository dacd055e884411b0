//go:build !linux

package disk

import (
	"errors"
	"os"
)

// cloneFile: no reflink outside Linux; SparseCopy copies the data ranges instead.
func cloneFile(_, _ *os.File) error { return errors.ErrUnsupported }

// copyFileRange: no copy_file_range outside Linux; SparseCopy reads and writes instead.
func copyFileRange(_, _ *os.File, _, _ int64) (int, error) { return 0, errors.ErrUnsupported }

func cfrUnsupported(err error) bool { return errors.Is(err, errors.ErrUnsupported) }

// PunchHole is Linux's fallocate PUNCH_HOLE: unsupported here, so callers write zeros instead.
func PunchHole(*os.File, int64, int64) error { return errors.ErrUnsupported }
