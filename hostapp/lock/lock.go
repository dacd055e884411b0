// Package lock holds the updater's own lock and waits for balena application update locks.
package lock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hostos/hostos/partition/disk"
)

// ErrLocked means another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// Lock is an exclusive flock held on a file. The file descriptor is close-on-exec, so commands the holder
// starts do not inherit the lock.
type Lock struct {
	f    *os.File
	path string
	dir  bool // a Target lock: nothing recorded in the file
}

// Acquire takes an exclusive flock on path, creating the file with mode 0600, without waiting. When another
// process holds it, the error wraps ErrLocked and names the holder's PID if it recorded one. The file then
// records this process's PID. flock locks belong to open files, so a second Acquire of the same path in the
// same process also fails.
//
// The file is opened without following a symbolic link and must be a regular file with one link, owned by
// this user: a link planted at the path (in a shared directory) cannot make the lock truncate or write any
// other file.
func Acquire(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|openNoFollow, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := checkOwnFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := disk.TryLock(f, false); err != nil {
		defer f.Close()
		if errors.Is(err, disk.ErrLocked) {
			if pid := holder(f); pid > 0 {
				return nil, fmt.Errorf("lock %s: %w (pid %d)", path, ErrLocked, pid)
			}
			return nil, fmt.Errorf("lock %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := recordPID(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: record pid: %w", path, err)
	}
	return &Lock{f: f, path: path}, nil
}

// Target takes the writers' lock of a mounted boot partition (or any directory hostos writes into): an
// exclusive flock on the directory itself, held until Release. hostos update on a device and configure
// --boot-dir take it, so they never write the same boot partition at once. Images and block devices
// need no call: partition/disk.Open takes the same kind of lock on them when it opens them for writing.
// Windows cannot lock a directory: there the lock is held on a file in the temporary directory named
// after dir's absolute path, which every hostos of the same user finds.
func Target(dir string) (*Lock, error) {
	f, err := openTarget(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := disk.TryLock(f, false); err != nil {
		f.Close()
		if errors.Is(err, disk.ErrLocked) {
			return nil, fmt.Errorf("%s: %w (another hostos update or configure)", dir, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &Lock{f: f, path: dir, dir: true}, nil
}

// Release clears the recorded PID and drops the lock. The file stays: removing it would let a process that
// opened it just before the removal lock a file nobody else can see. Releasing twice is a no-op.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	var terr error
	if !l.dir {
		terr = f.Truncate(0)
	}
	uerr := disk.Unlock(f)
	cerr := f.Close()
	if err := errors.Join(terr, uerr, cerr); err != nil {
		return fmt.Errorf("release lock %s: %w", l.path, err)
	}
	return nil
}

func recordPID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

// holder reads the PID recorded in a lock file; 0 if there is none.
func holder(f *os.File) int {
	b := make([]byte, 32)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// WaitAppLocks waits until none of the files matching pattern (balena:
// /tmp/balena-supervisor/services/*/*/updates.lock) is held by flock, checking every interval, and returns
// the context's error, naming the locks still held, when ctx ends first. Each file is probed with a shared
// non-blocking flock, released at once; a file that exists but is not locked does not block (in balena the
// lock is the flock, not the file). log, when not nil, hears which locks are waited for whenever that changes.
//
// Nothing stops an application from taking a lock again right after WaitAppLocks returns.
func WaitAppLocks(ctx context.Context, pattern string, interval time.Duration, log func(string)) error {
	if interval <= 0 {
		return fmt.Errorf("wait for application update locks: poll interval %s is not positive", interval)
	}
	if log == nil {
		log = func(string) {}
	}
	var logged string
	for {
		held, err := heldLocks(pattern)
		if err != nil {
			return fmt.Errorf("wait for application update locks: %w", err)
		}
		if len(held) == 0 {
			if logged != "" {
				log("application update locks released")
			}
			return nil
		}
		if s := strings.Join(held, ", "); s != logged {
			log("waiting for application update locks: " + s)
			logged = s
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for application update locks: %s still held: %w", strings.Join(held, ", "), ctx.Err())
		case <-t.C:
		}
	}
}

// heldLocks returns the files matching pattern that some process holds a flock on.
func heldLocks(pattern string) ([]string, error) {
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	var held []string
	for _, p := range paths {
		locked, err := isLocked(p)
		if err != nil {
			return nil, err
		}
		if locked {
			held = append(held, p)
		}
	}
	return held, nil
}

func isLocked(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // removed since the glob
	}
	if err != nil {
		return false, fmt.Errorf("probe lock %s: %w", path, err)
	}
	defer f.Close()
	switch err := disk.TryLock(f, true); {
	case errors.Is(err, disk.ErrLocked):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("probe lock %s: %w", path, err)
	}
	return false, nil // closing f drops the probe's lock
}
