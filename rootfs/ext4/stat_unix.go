//go:build unix

package ext4

import "golang.org/x/sys/unix"

// lstat reads p without following a symbolic link.
func lstat(p string) (entryStat, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return entryStat{}, err
	}
	return entryStat{Mode: uint32(st.Mode), Uid: st.Uid, Gid: st.Gid, Size: st.Size, Mtime: int64(st.Mtim.Sec)}, nil
}
