//go:build unix

package enginestore

import (
	"time"

	"golang.org/x/sys/unix"
)

// setTimesNoFollow sets the access and modification times of p, a symbolic link itself and not its target.
func setTimesNoFollow(p string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}
