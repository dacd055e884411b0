package update

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hostos/hostos/rootfs/ext4"
)

// StateStore holds the breadcrumbs: empty files in the root of the state partition.
type StateStore interface {
	Has(name string) (bool, error)
	// Touch creates the empty file name (nothing when it exists) and makes it durable.
	Touch(name string) error
	// Remove deletes name (nothing when it is absent) and makes that durable.
	Remove(name string) error
}

// DirStore is the state partition mounted at a directory (/mnt/state on a device).
type DirStore string

// Has reports whether the breadcrumb exists.
func (d DirStore) Has(name string) (bool, error) {
	_, err := os.Lstat(filepath.Join(string(d), name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Touch creates the breadcrumb and syncs it and the directory.
func (d DirStore) Touch(name string) error {
	f, err := os.OpenFile(filepath.Join(string(d), name), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state: %s: %w", name, err)
	}
	return syncDir(string(d))
}

// Remove deletes the breadcrumb and syncs the directory.
func (d DirStore) Remove(name string) error {
	err := os.Remove(filepath.Join(string(d), name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return syncDir(string(d))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("state: sync %s: %w", dir, err)
	}
	return nil
}

// ext4Store is the state partition inside an image file, edited with debugfs (rootless).
type ext4Store struct {
	fs ext4.Debugfs
}

func (s ext4Store) list() (map[string]bool, error) {
	// "ls -p" prints one machine-readable line per entry: /inode/mode/uid/gid/name/size/
	out, err := s.fs.Run(context.Background(), "ls -p /")
	if err != nil {
		return nil, fmt.Errorf("state partition: %w", err)
	}
	names := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(l), "/")
		if len(f) >= 7 && f[5] != "." && f[5] != ".." {
			names[f[5]] = true
		}
	}
	return names, nil
}

func (s ext4Store) Has(name string) (bool, error) {
	names, err := s.list()
	return names[name], err
}

func (s ext4Store) Touch(name string) error {
	if ok, err := s.Has(name); err != nil || ok {
		return err
	}
	q, err := ext4.Quote(name)
	if err != nil {
		return err
	}
	empty, err := os.CreateTemp("", "hostos-breadcrumb-*")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	empty.Close()
	defer os.Remove(empty.Name())
	if err := os.Chmod(empty.Name(), 0o644); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	src, err := ext4.Quote(empty.Name())
	if err != nil {
		return err
	}
	if err := s.fs.Apply(context.Background(), []string{"write " + src + " " + q}); err != nil && !strings.Contains(err.Error(), "Allocated inode") {
		return fmt.Errorf("state: create %s: %w", name, err)
	}
	return nil
}

func (s ext4Store) Remove(name string) error {
	if ok, err := s.Has(name); err != nil || !ok {
		return err
	}
	q, err := ext4.Quote(name)
	if err != nil {
		return err
	}
	if err := s.fs.Apply(context.Background(), []string{"rm " + q}); err != nil {
		return fmt.Errorf("state: remove %s: %w", name, err)
	}
	return nil
}
