//go:build unix

package flash

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// openNoBlock keeps opening a FIFO from waiting and a terminal from becoming the controlling one.
const openNoBlock = unix.O_NOCTTY | unix.O_NONBLOCK

// tryLock takes an exclusive flock on f without waiting; it fails while another hostos writes f.
func tryLock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// refuseRawPath: every unix device is a node that openTarget checks by its type.
func refuseRawPath(string) error { return nil }
