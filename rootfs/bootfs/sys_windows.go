package bootfs

import "golang.org/x/sys/windows"

// openNoBlock: Windows opens no FIFO through a path that would wait.
const openNoBlock = 0

// statFS returns the bytes free to this user on the volume holding dir. Its block size is not asked
// for (0): BlockSize then assumes 4 KiB.
func statFS(dir string) (free, blockSize int64, err error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, 0, err
	}
	var avail, total, totalFree uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &totalFree); err != nil {
		return 0, 0, err
	}
	return int64(avail), 0, nil
}
