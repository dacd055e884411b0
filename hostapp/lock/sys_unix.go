//go:build unix

package lock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openNoFollow opens a lock file without following a symbolic link and without waiting on a FIFO.
const openNoFollow = unix.O_NOFOLLOW | unix.O_NONBLOCK

func checkOwnFile(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return errors.New("not a regular file")
	case st.Nlink != 1:
		return fmt.Errorf("has %d hard links", st.Nlink)
	case st.Uid != uint32(os.Geteuid()):
		return fmt.Errorf("owned by uid %d, not by this user", st.Uid)
	}
	return nil
}

// openTarget opens the directory dir itself, which Target locks.
func openTarget(dir string) (*os.File, error) {
	return os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK, 0)
}
