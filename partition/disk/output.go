package disk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// CheckOutput verifies, before any work starts, that path may receive a new image, bundle or map: it
// does not exist yet, or it is a regular file that is none of inputs (compared by device and inode, so
// another spelling or a hard link of an input counts). A device node, a FIFO, a socket or a directory at
// path is refused, never replaced by a regular file; so is an output that would overwrite what the job
// reads. The directory it goes into must exist.
func CheckOutput(path string, inputs ...string) error {
	if path == "" {
		return errors.New("no output path given")
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("output %s: %s, not a regular file", path, describeMode(fi.Mode()))
		}
		for _, in := range inputs {
			if in == "" {
				continue
			}
			if ii, err := os.Stat(in); err == nil && os.SameFile(fi, ii) {
				return fmt.Errorf("output %s: is the input %s", path, in)
			}
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return fmt.Errorf("output %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("output directory %s: %w", dir, err)
	}
	if !di.IsDir() {
		return fmt.Errorf("output directory %s: not a directory", dir)
	}
	return nil
}

func describeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	default:
		return "a special file"
	}
}

// Output is a new file that appears at its path only once complete: it is written as a temporary file
// beside the path (same directory, so the rename is atomic) and renamed into place by Commit after an
// fsync of the file, followed by an fsync of the directory. Until then a crash or an error leaves the
// path as it was; Abort (safe to defer) removes the temporary file.
type Output struct {
	*os.File
	path string
	done bool
}

// CreateOutput checks path as CheckOutput does and creates the temporary file with mode perm.
func CreateOutput(path string, perm os.FileMode, inputs ...string) (*Output, error) {
	if err := CheckOutput(path, inputs...); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".hostos-*")
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	return &Output{File: f, path: path}, nil
}

// Commit makes the file durable and renames it into place.
func (o *Output) Commit() error {
	if o.done {
		return fmt.Errorf("output %s: already finished", o.path)
	}
	o.done = true
	err := o.File.Close()
	if err == nil {
		err = Publish(o.File.Name(), o.path)
	}
	if err != nil {
		os.Remove(o.File.Name())
		return fmt.Errorf("output %s: %w", o.path, err)
	}
	return nil
}

// Publish puts the finished file tmp at dest in one step, the one fsync discipline of every hostos output:
// tmp's data is made durable, tmp is renamed over dest (same file system: atomic), and the directory is
// made durable. A crash leaves dest as it was or as tmp was, never a mix.
func Publish(tmp, dest string) error {
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dest); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(dest))
}

// Abort removes the temporary file unless Commit succeeded.
func (o *Output) Abort() {
	if o.done {
		return
	}
	o.done = true
	o.File.Close()
	os.Remove(o.File.Name())
}

// SyncDir makes a rename or a new name in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
