package bootfs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Dir is a boot partition mounted at a directory, as /mnt/boot on a running balenaOS device. Every name
// is resolved inside the directory only (os.Root): a symbolic link, at any depth, that leads out of it
// is refused with ErrEscapes, never followed.
type Dir string

var _ FS = Dir("")

// ErrEscapes marks a name that resolves, through a symbolic link or "..", to a place outside the boot
// directory.
var ErrEscapes = errors.New("leads outside the boot directory")

// open opens the directory as an os.Root and returns the name relative to it ("." for the directory).
func (d Dir) open(name string) (*os.Root, string, error) {
	if strings.Contains(name, "\x00") {
		return nil, "", fmt.Errorf("%q: invalid file name", name)
	}
	rel := strings.TrimPrefix(path.Clean("/"+name), "/")
	if rel == "" {
		rel = "."
	}
	r, err := os.OpenRoot(string(d))
	if err != nil {
		return nil, "", err // a *PathError naming the directory
	}
	return r, rel, nil
}

// wrap names the file in err and turns os.Root's refusal of an escaping path into ErrEscapes.
func (d Dir) wrap(name string, err error) error {
	if err == nil {
		return nil
	}
	if escapes(err) {
		return fmt.Errorf("%s in %s: %w (a symbolic link or .. leaves it)", strings.TrimPrefix(name, "/"), string(d), ErrEscapes)
	}
	return err
}

// escapes reports whether err is os.Root refusing a path that leaves the root. os exports no sentinel
// for it; the refusal is a *PathError whose cause is neither a system error nor a known fs error.
func escapes(err error) bool {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return false
	}
	var errno syscall.Errno
	if errors.As(pe.Err, &errno) {
		return false
	}
	return strings.Contains(pe.Err.Error(), "escapes")
}

// ReadFile reads the regular file name below the directory. A FIFO, a device or a directory is refused
// without waiting on it, and no more than the size the file had when opened is read.
func (d Dir) ReadFile(name string) ([]byte, error) {
	r, rel, err := d.open(name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked on the open file.
	f, err := r.OpenFile(rel, os.O_RDONLY|openNoBlock, 0)
	if err != nil {
		return nil, d.wrap(name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s in %s: not a regular file", strings.TrimPrefix(name, "/"), string(d))
	}
	b, err := io.ReadAll(io.LimitReader(f, fi.Size()+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > fi.Size() {
		return nil, fmt.Errorf("%s in %s: grew while being read", strings.TrimPrefix(name, "/"), string(d))
	}
	return b, nil
}

// WriteFile writes data to a temporary file beside name, syncs it, renames it over name and syncs the
// directory, so that name holds the old or the new content whatever happens.
func (d Dir) WriteFile(name string, data []byte, mtime time.Time) (err error) {
	r, rel, err := d.open(name)
	if err != nil {
		return err
	}
	defer r.Close()
	mode := os.FileMode(0o644)
	if fi, err := r.Stat(rel); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", name)
		}
		mode = fi.Mode().Perm()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return d.wrap(name, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(path.Dir(rel), "."+path.Base(rel)+".hostos-"+hex.EncodeToString(rnd[:]))
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, d.wrap(name, err))
	}
	defer func() {
		if err != nil {
			f.Close()
			r.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	// vfat has no permission bits: Chmod fails there with EPERM and means nothing, so it is best effort.
	_ = f.Chmod(mode)
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if !mtime.IsZero() {
		_ = r.Chtimes(tmp, mtime, mtime)
	}
	if err = r.Rename(tmp, rel); err != nil {
		return fmt.Errorf("write %s: %w", name, d.wrap(name, err))
	}
	return syncDir(r, path.Dir(rel))
}

// MkdirAll creates the directory name and its parents.
func (d Dir) MkdirAll(name string, _ time.Time) error {
	r, rel, err := d.open(name)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.MkdirAll(rel, 0o755); err != nil {
		return d.wrap(name, err)
	}
	return syncDir(r, path.Dir(rel))
}

// Remove deletes name and syncs its directory.
func (d Dir) Remove(name string) error {
	r, rel, err := d.open(name)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Remove(rel); err != nil {
		return d.wrap(name, err)
	}
	return syncDir(r, path.Dir(rel))
}

// ModTime is the modification time of name.
func (d Dir) ModTime(name string) (time.Time, error) {
	r, rel, err := d.open(name)
	if err != nil {
		return time.Time{}, err
	}
	defer r.Close()
	fi, err := r.Stat(rel)
	if err != nil {
		return time.Time{}, d.wrap(name, err)
	}
	return fi.ModTime(), nil
}

// Free is the space left on the file system holding the directory.
func (d Dir) Free() int64 {
	free, _, err := statFS(string(d))
	if err != nil {
		return 0
	}
	return free
}

// BlockSize is the file system's allocation unit.
func (d Dir) BlockSize() int64 {
	_, bs, err := statFS(string(d))
	if err != nil || bs <= 0 {
		return 4096
	}
	return bs
}

// list returns the regular files below the directory; symbolic links are not followed.
func (d Dir) list() ([]string, error) {
	r, err := os.OpenRoot(string(d))
	if err != nil {
		return nil, fmt.Errorf("boot directory: %w", err)
	}
	defer r.Close()
	var files []string
	err = fs.WalkDir(r.FS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

// syncDir flushes the directory dir of r to disk.
func syncDir(r *os.Root, dir string) error {
	f, err := r.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
