//go:build unix

package ext4

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// nextData returns the first data range [data, hole) of f at or after pos, with ok false when only a
// hole follows. A filesystem without hole support gives [pos, the end of the file).
func nextData(f *os.File, pos int64) (data, hole int64, ok bool) {
	data, err := unix.Seek(int(f.Fd()), pos, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return 0, 0, false
	}
	if err != nil {
		data = pos
	}
	hole, err = unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
	if err != nil {
		hole = 1<<63 - 1
	}
	return data, hole, true
}
