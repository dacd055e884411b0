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

// errWouldBlock is what tryLock returns when another process holds the lock.
var errWouldBlock = unix.EWOULDBLOCK

// tryLock takes a flock on f without waiting: shared or exclusive.
func tryLock(f *os.File, shared bool) error {
	how := unix.LOCK_EX | unix.LOCK_NB
	if shared {
		how = unix.LOCK_SH | unix.LOCK_NB
	}
	return flock(f, how)
}

func unlock(f *os.File) error { return flock(f, unix.LOCK_UN) }

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

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
