package tree

import (
	"io/fs"
	"os"
)

// hardLinkKey: Windows gives no inode through FileInfo; hard links are counted once per name, which
// only overestimates the space a tree needs.
func hardLinkKey(fs.FileInfo) ([2]uint64, bool) { return [2]uint64{}, false }

// ownerPerm: Windows files have no Unix owner or mode; the root directory keeps the defaults.
func ownerPerm(fs.FileInfo) (uid, gid, perm uint32, ok bool) { return 0, 0, 0, false }

// OwnedByRoot: Windows files have no Unix owner; staged paths always need an owner fixup.
func OwnedByRoot(p string) (bool, error) {
	_, err := os.Lstat(p)
	return false, err
}
