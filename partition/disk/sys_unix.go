//go:build unix

package disk

import (
	"os"

	"golang.org/x/sys/unix"
)

// openNoBlock keeps opening a FIFO from waiting for its writer and a terminal from becoming the
// controlling one; callers check the file's type on the open file.
const openNoBlock = unix.O_NONBLOCK | unix.O_NOCTTY

// ownedByMe tells whether the entry at p (not followed) belongs to the effective user.
func ownedByMe(p string) bool {
	var st unix.Stat_t
	return unix.Lstat(p, &st) == nil && st.Uid == uint32(os.Geteuid())
}

// lockDir holds a work directory: an exclusive flock on it, which sweepStale tests.
func lockDir(f *os.File) error { return TryLock(f, false) }
