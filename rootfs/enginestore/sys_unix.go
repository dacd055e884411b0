//go:build unix

package enginestore

import (
	"time"

	"golang.org/x/sys/unix"
)

// ownedByRoot tells whether path p (not followed) belongs to 0:0.
func ownedByRoot(p string) (bool, error) {
	var s unix.Stat_t
	if err := unix.Lstat(p, &s); err != nil {
		return false, err
	}
	return s.Uid == 0 && s.Gid == 0, nil
}

// setTimesNoFollow sets the access and modification times of p, a symbolic link itself and not its target.
func setTimesNoFollow(p string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}
