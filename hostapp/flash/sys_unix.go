//go:build unix

package flash

import (
	"golang.org/x/sys/unix"
)

// openNoBlock keeps opening a FIFO from waiting and a terminal from becoming the controlling one.
const openNoBlock = unix.O_NOCTTY | unix.O_NONBLOCK

// refuseRawPath: every unix device is a node that openTarget checks by its type.
func refuseRawPath(string) error { return nil }
