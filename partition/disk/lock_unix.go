//go:build unix

package disk

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// ErrLocked is what TryLock returns when another open file holds a conflicting lock.
var ErrLocked = unix.EWOULDBLOCK

// TryLock takes an advisory lock on the whole of f without waiting, exclusive or shared, held until
// Unlock or until f is closed: flock on unix, LockFileEx elsewhere. Every hostos writer of an image, a
// device or a lock file takes its lock through here.
func TryLock(f *os.File, shared bool) error {
	how := unix.LOCK_EX | unix.LOCK_NB
	if shared {
		how = unix.LOCK_SH | unix.LOCK_NB
	}
	return flock(f, how)
}

// Unlock drops the lock TryLock took on f.
func Unlock(f *os.File) error { return flock(f, unix.LOCK_UN) }

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
