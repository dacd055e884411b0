//go:build unix

package bootfs

import "golang.org/x/sys/unix"

// openNoBlock keeps opening a FIFO from waiting for a writer; the type is checked on the open file.
const openNoBlock = unix.O_NONBLOCK

// statFS returns the bytes free to this user and the block size of the file system holding dir.
func statFS(dir string) (free, blockSize int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Bsize), nil
}
