package bootfs

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is a boot partition mounted at a directory, as /mnt/boot on a running balenaOS device.
type Dir string

var _ FS = Dir("")

func (d Dir) path(name string) (string, error) {
	p := path.Clean("/" + name)
	if strings.Contains(name, "\x00") {
		return "", fmt.Errorf("%q: invalid file name", name)
	}
	return filepath.Join(string(d), filepath.FromSlash(p)), nil
}

// ReadFile reads name below the directory.
func (d Dir) ReadFile(name string) ([]byte, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// WriteFile writes data to a temporary file beside name, syncs it, renames it over name and syncs the
// directory, so that name holds the old or the new content whatever happens.
func (d Dir) WriteFile(name string, data []byte, mtime time.Time) (err error) {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(p); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", name)
		}
		mode = fi.Mode().Perm()
	}
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".hostos-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
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
		_ = os.Chtimes(tmp, mtime, mtime)
	}
	if err = os.Rename(tmp, p); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return syncDir(filepath.Dir(p))
}

// MkdirAll creates the directory name and its parents.
func (d Dir) MkdirAll(name string, _ time.Time) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

// Remove deletes name and syncs its directory.
func (d Dir) Remove(name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

// ModTime is the modification time of name.
func (d Dir) ModTime(name string) (time.Time, error) {
	p, err := d.path(name)
	if err != nil {
		return time.Time{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// Free is the space left on the file system holding the directory.
func (d Dir) Free() int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(string(d), &st); err != nil {
		return 0
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// BlockSize is the file system's allocation unit.
func (d Dir) BlockSize() int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(string(d), &st); err != nil || st.Bsize <= 0 {
		return 4096
	}
	return int64(st.Bsize)
}

func (d Dir) list() ([]string, error) {
	var files []string
	err := filepath.WalkDir(string(d), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() {
			rel, err := filepath.Rel(string(d), p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
