package disk

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// staleAfter is how old an unlocked work directory must be before another run removes it: a directory
// that young may belong to a run that has created it and not yet locked it.
const staleAfter = time.Minute

// WorkDir creates a temporary directory named prefix+random in parent, for a job's staging, and holds a
// flock on it until release, which also removes it. Work directories of earlier runs that were killed
// (SIGKILL, a power cut) hold no lock: WorkDir removes those it finds with the same prefix, so they are
// cleaned up by the next run instead of piling up.
func WorkDir(parent, prefix string) (dir string, release func(), err error) {
	if parent == "" {
		parent = os.TempDir()
	}
	sweepStale(parent, prefix)
	dir, err = os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", nil, err
	}
	f, err := os.Open(dir)
	if err == nil {
		err = lockDir(f)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("work directory %s: %w", dir, err)
	}
	return dir, func() { os.RemoveAll(dir); f.Close() }, nil
}

// sweepStale removes parent's prefix* directories that nobody holds and that are old enough.
func sweepStale(parent, prefix string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		fi, err := os.Lstat(p)
		if err != nil || time.Since(fi.ModTime()) < staleAfter {
			continue
		}
		if !ownedByMe(p) {
			continue // only our own leftovers
		}
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		// A directory someone holds (EWOULDBLOCK), or one that cannot be locked, is left alone.
		if err := TryLock(f, false); err == nil {
			os.RemoveAll(p)
		}
		f.Close()
	}
}
