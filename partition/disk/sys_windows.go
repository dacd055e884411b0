package disk

import (
	"os"
)

// openNoBlock: Windows opens no FIFO or terminal through a path that would wait.
const openNoBlock = 0

// ownedByMe is false on Windows: work directories there are not swept (the system cleans its
// temporary directory), since a directory cannot be flocked to tell a live run's from a dead one's.
func ownedByMe(string) bool { return false }

// lockDir takes no lock: Windows does not lock directories, and ownedByMe keeps sweepStale away.
func lockDir(*os.File) error { return nil }
