package ext4

// The file-type bits of an ext4 inode's mode (Linux's S_IFMT values, whatever the host).
const (
	modeType    = 0o170000
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
)

// entryStat is what Add reads of a staged path: its ext4 mode (type and permission bits), owner, size
// and modification time in seconds.
type entryStat struct {
	Mode     uint32
	Uid, Gid uint32
	Size     int64
	Mtime    int64
}
