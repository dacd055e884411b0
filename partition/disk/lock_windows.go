package disk

import (
	"os"

	"golang.org/x/sys/windows"
)

// ErrLocked is what TryLock returns when another open file holds a conflicting lock.
var ErrLocked = windows.ERROR_LOCK_VIOLATION

// lockByte is where the Windows lock lies: one byte near the largest offset, past any data. Windows
// locks are mandatory, so a lock on data would keep every other handle (even this process's) from
// reading it; a range past the end of the file may be locked and guards nothing but the lock itself.
var lockByte = windows.Overlapped{Offset: 0xFFFFFFFE, OffsetHigh: 0x7FFFFFFF}

// TryLock takes a lock on f without waiting, exclusive or shared, held until Unlock or until f is
// closed (LockFileEx of lockByte). Every hostos writer of an image, a device or a lock file takes its
// lock through here.
func TryLock(f *os.File, shared bool) error {
	flags := uint32(windows.LOCKFILE_FAIL_IMMEDIATELY)
	if !shared {
		flags |= windows.LOCKFILE_EXCLUSIVE_LOCK
	}
	ol := lockByte
	return windows.LockFileEx(windows.Handle(f.Fd()), flags, 0, 1, 0, &ol)
}

// Unlock drops the lock TryLock took on f.
func Unlock(f *os.File) error {
	ol := lockByte
	return windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, &ol)
}
