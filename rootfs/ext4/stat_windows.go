package ext4

import (
	"io/fs"
	"os"
)

// lstat reads p without following a symbolic link. Windows files have no Unix owner: they are root's,
// with their type and permission bits as Go reports them.
func lstat(p string) (entryStat, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return entryStat{}, err
	}
	m := fi.Mode()
	mode := uint32(m.Perm())
	switch {
	case m.IsDir():
		mode |= modeDir
	case m&fs.ModeSymlink != 0:
		mode = modeSymlink | 0o777
	default:
		mode |= modeRegular
	}
	return entryStat{Mode: mode, Size: fi.Size(), Mtime: fi.ModTime().Unix()}, nil
}
