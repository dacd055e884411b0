package update

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hostos/hostos/rootfs/ext4"
)

// StateStore holds the breadcrumbs: empty files in the root of the state partition.
type StateStore interface {
	Has(name string) (bool, error)
	// Touch creates the empty file name (nothing when it exists) and makes it durable.
	Touch(name string) error
	// Remove deletes name (nothing when it is absent) and makes that durable.
	Remove(name string) error
	// Put replaces name with data and makes it durable; an interruption leaves the old file, or none.
	Put(name string, data []byte) error
	// Get reads name; fs.ErrNotExist when it is absent.
	Get(name string) ([]byte, error)
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

// Put writes the file under a temporary name, syncs it and renames it into place.
func (d DirStore) Put(name string, data []byte) error {
	f, err := os.CreateTemp(string(d), "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(string(d), name))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("state: %s: %w", name, err)
	}
	return syncDir(string(d))
}

// Get reads the file.
func (d DirStore) Get(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(string(d), name))
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return b, nil
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

// ext4Store is the state partition inside an image file, edited with debugfs (rootless). It lists the
// partition root once and keeps the listing up to date with its own changes.
type ext4Store struct {
	fs    ext4.Debugfs
	disk  io.ReaderAt
	size  int64
	names map[string]bool
}

// batchStore is a StateStore that can make several changes in one go.
type batchStore interface {
	Apply(touch, remove []string) error
}

// Put replaces the file in one debugfs run (rm, then write: an interruption can leave none).
func (s *ext4Store) Put(name string, data []byte) error {
	names, err := s.list()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", "hostos-state-*")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	src, err := ext4.Quote(f.Name())
	if err != nil {
		return err
	}
	q, err := ext4.Quote(name)
	if err != nil {
		return err
	}
	var cmds []string
	if names[name] {
		cmds = append(cmds, "rm "+q)
	}
	cmds = append(cmds, "write "+src+" "+q)
	if err := s.fs.Apply(context.Background(), cmds); err != nil {
		s.names = nil
		return fmt.Errorf("state: %s: %w", name, err)
	}
	names[name] = true
	return nil
}

// Get reads the file from the state partition with debugfs dump (go-diskfs's reader loops forever on some
// files debugfs wrote).
func (s *ext4Store) Get(name string) ([]byte, error) {
	names, err := s.list()
	if err != nil {
		return nil, err
	}
	if !names[name] {
		return nil, fmt.Errorf("state: %s: %w", name, fs.ErrNotExist)
	}
	dir, err := os.MkdirTemp("", "hostos-state-*")
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "f")
	q, err := ext4.Quote(name)
	if err != nil {
		return nil, err
	}
	dst, err := ext4.Quote(out)
	if err != nil {
		return nil, err
	}
	if _, err := s.fs.Run(context.Background(), "dump "+q+" "+dst); err != nil {
		return nil, fmt.Errorf("state: %s: %w", name, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("state: %s: %w", name, err)
	}
	return b, nil
}

func (s *ext4Store) list() (map[string]bool, error) {
	if s.names != nil {
		return s.names, nil
	}
	list, err := ext4.ReadDir(s.disk, s.fs.Offset, s.size, "/")
	if err != nil {
		return nil, fmt.Errorf("state partition: %w", err)
	}
	names := map[string]bool{}
	for _, n := range list {
		names[n] = true
	}
	s.names = names
	return names, nil
}

// Apply creates and removes breadcrumbs in one debugfs run.
func (s *ext4Store) Apply(touch, remove []string) error {
	names, err := s.list()
	if err != nil {
		return err
	}
	var cmds []string
	var empty string
	for _, n := range touch {
		if names[n] {
			continue
		}
		if empty == "" {
			f, err := os.CreateTemp("", "hostos-breadcrumb-*")
			if err != nil {
				return fmt.Errorf("state: %w", err)
			}
			f.Close()
			defer os.Remove(f.Name())
			if err := os.Chmod(f.Name(), 0o644); err != nil {
				return fmt.Errorf("state: %w", err)
			}
			if empty, err = ext4.Quote(f.Name()); err != nil {
				return err
			}
		}
		q, err := ext4.Quote(n)
		if err != nil {
			return err
		}
		cmds = append(cmds, "write "+empty+" "+q)
	}
	for _, n := range remove {
		if !names[n] {
			continue
		}
		q, err := ext4.Quote(n)
		if err != nil {
			return err
		}
		cmds = append(cmds, "rm "+q)
	}
	if len(cmds) == 0 {
		return nil
	}
	if err := s.fs.Apply(context.Background(), cmds); err != nil {
		s.names = nil
		return fmt.Errorf("state: %w", err)
	}
	for _, n := range touch {
		names[n] = true
	}
	for _, n := range remove {
		delete(names, n)
	}
	return nil
}

func (s *ext4Store) Has(name string) (bool, error) {
	names, err := s.list()
	return names[name], err
}

func (s *ext4Store) Touch(name string) error { return s.Apply([]string{name}, nil) }

func (s *ext4Store) Remove(name string) error { return s.Apply(nil, []string{name}) }
