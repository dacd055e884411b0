package ext4

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	dext4 "github.com/diskfs/go-diskfs/filesystem/ext4"
)

// FS reads an ext4 filesystem opened once, for callers that read many files of it.
type FS struct {
	fsys *dext4.FileSystem
}

// Open reads the superblock and group descriptors of the ext4 filesystem at [off, off+size) of r.
func Open(r io.ReaderAt, off, size int64) (*FS, error) {
	fsys, err := dext4.Read(readOnlyStorage{r: io.NewSectionReader(r, 0, off+size)}, size, off, 512)
	if err != nil {
		return nil, fmt.Errorf("ext4 at offset %d: %w", off, err)
	}
	return &FS{fsys: fsys}, nil
}

// ReadFile reads the file name, resolving symlinks inside the filesystem.
func (f *FS) ReadFile(name string) ([]byte, error) {
	p, err := resolve(f.fsys, name)
	if err != nil {
		return nil, err
	}
	return readFile(f, p, name)
}

// ReadDir lists the names in directory name, without "." and "..".
func (f *FS) ReadDir(name string) ([]string, error) {
	p, err := resolve(f.fsys, name)
	if err != nil {
		return nil, err
	}
	rel := strings.TrimPrefix(p, "/")
	if rel == "" {
		rel = "."
	}
	entries, err := f.fsys.ReadDir(rel)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); n != "." && n != ".." {
			names = append(names, n)
		}
	}
	return names, nil
}

// Lstat describes the entry name without following a final symlink; a missing entry gives an error
// wrapping fs.ErrNotExist.
func (f *FS) Lstat(name string) (fs.FileInfo, error) {
	p := path.Clean("/" + name)
	if p == "/" {
		return f.fsys.Stat(p)
	}
	parent, err := resolve(f.fsys, path.Dir(p))
	if err != nil {
		return nil, err
	}
	fi, err := f.fsys.Stat(path.Join(parent, path.Base(p)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return fi, nil
}

// ReadLink reads the target of the symlink name.
func (f *FS) ReadLink(name string) (string, error) {
	p := path.Clean("/" + name)
	parent, err := resolve(f.fsys, path.Dir(p))
	if err != nil {
		return "", err
	}
	t, err := f.fsys.ReadLink(strings.TrimPrefix(path.Join(parent, path.Base(p)), "/"))
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return t, nil
}
