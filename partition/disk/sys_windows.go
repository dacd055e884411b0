package disk

import (
	"os"

	"golang.org/x/sys/windows"
)

// openNoBlock: Windows opens no FIFO or terminal through a path that would wait.
const openNoBlock = 0

// errLocked is what tryLock returns when another process holds the lock.
var errLocked = windows.ERROR_LOCK_VIOLATION

// tryLock takes an exclusive LockFileEx lock on f's first byte without waiting, held until f is closed
// (the lock covers a byte range; a range past the end of the file is allowed and locks nothing else).
func tryLock(f *os.File) error {
	var ol windows.Overlapped
	return windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
}

// ownedByMe is false on Windows: work directories there are not swept (the system cleans its
// temporary directory), since a directory cannot be flocked to tell a live run's from a dead one's.
func ownedByMe(string) bool { return false }

// lockDir takes no lock: Windows does not lock directories, and ownedByMe keeps sweepStale away.
func lockDir(*os.File) error { return nil }
