//go:build unix

package tree

import (
	"io/fs"
	"os"
	"syscall"
)

// hardLinkKey identifies the inode of info when it has more than one name, so it is counted once.
func hardLinkKey(info fs.FileInfo) ([2]uint64, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || st.Nlink <= 1 {
		return [2]uint64{}, false
	}
	return [2]uint64{uint64(st.Dev), uint64(st.Ino)}, true
}

// ownerPerm returns the owner and the permission bits (setuid, setgid and sticky included) of info.
func ownerPerm(info fs.FileInfo) (uid, gid, perm uint32, ok bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0, false
	}
	return st.Uid, st.Gid, uint32(st.Mode) & 0o7777, true
}

// OwnedByRoot tells whether the path p (not followed) belongs to 0:0, for callers listing the owner
// fixups of what they staged.
func OwnedByRoot(p string) (bool, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return false, err
	}
	uid, gid, _, ok := ownerPerm(fi)
	return ok && uid == 0 && gid == 0, nil
}
