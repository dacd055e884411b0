package ext4

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
)

// Open opens the file name for reading, resolving symlinks inside the filesystem. Unlike ReadFile it
// has no size limit: the caller reads as much as it wants.
func (f *FS) Open(name string) (io.ReadCloser, error) {
	p, err := resolve(f.fsys, name)
	if err != nil {
		return nil, err
	}
	return openResolved(f, p, name)
}

// Open opens the file name for reading, as FS.Open.
func (c *Cached) Open(name string) (io.ReadCloser, error) {
	p, err := c.resolve(name)
	if err != nil {
		return nil, err
	}
	if e := c.entry(path.Dir(p), path.Base(p)); p == "/" || e == nil || !e.listed.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	return openFile(c.f, p, name)
}

// openResolved opens the resolved path p, refusing anything but a regular file.
func openResolved(f *FS, p, name string) (io.ReadCloser, error) {
	fi, err := f.fsys.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	return openFile(f, p, name)
}

// openFile opens the regular file at the resolved path p.
func openFile(f *FS, p, name string) (io.ReadCloser, error) {
	file, err := f.fsys.OpenFile(p, os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return &fileReader{f: file, name: name}, nil
}

// fileReader reads a go-diskfs file, naming it in errors. go-diskfs's ext4 file reader can return no bytes
// and no error forever on some extent layouts (seen on a file debugfs wrote), where a reader would spin: one
// that makes no progress is an error.
type fileReader struct {
	f      io.ReadCloser
	name   string
	stalls int
}

func (r *fileReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	switch {
	case err != nil && !errors.Is(err, io.EOF):
		return n, fmt.Errorf("%s: %w", r.name, err)
	case n == 0 && err == nil && len(p) > 0:
		if r.stalls++; r.stalls > 100 {
			return 0, fmt.Errorf("%s: the filesystem reader makes no progress (damaged extents?)", r.name)
		}
	default:
		r.stalls = 0
	}
	return n, err
}

func (r *fileReader) Close() error { return r.f.Close() }
