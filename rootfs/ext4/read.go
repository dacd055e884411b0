package ext4

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	dext4 "github.com/diskfs/go-diskfs/filesystem/ext4"
)

// ReadFile reads one file from the ext4 filesystem at [off, off+size) of r, resolving symlinks
// (also in the middle of the path) inside that filesystem.
func ReadFile(r io.ReaderAt, off, size int64, name string) ([]byte, error) {
	f, err := Open(r, off, size)
	if err != nil {
		return nil, err
	}
	return f.ReadFile(name)
}

// maxReadFile bounds what ReadFile and FS.ReadFile return: they read small files (os-release, engine
// store metadata), and a damaged or hostile filesystem must not make them read forever.
const maxReadFile = 64 << 20

// readFile reads the regular file at the resolved path p (name in errors) to its end, at most
// maxReadFile bytes, through fileReader, which fails a reader that makes no progress.
func readFile(f *FS, p, name string) ([]byte, error) {
	r, err := openFile(f, p, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxReadFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxReadFile {
		return nil, fmt.Errorf("%s: larger than the %d MiB read here", name, maxReadFile>>20)
	}
	return b, nil
}

// resolve walks name component by component, replacing symlinks by their targets.
func resolve(fsys *dext4.FileSystem, name string) (string, error) {
	parts := strings.Split(strings.Trim(path.Clean("/"+name), "/"), "/")
	cur := "/"
	for hops := 0; len(parts) > 0; {
		next := path.Join(cur, parts[0])
		parts = parts[1:]
		fi, err := fsys.Stat(next)
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		target, err := fsys.ReadLink(strings.TrimPrefix(next, "/"))
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", name)
		}
		if !path.IsAbs(target) {
			target = path.Join(cur, target)
		}
		rest := strings.Split(strings.Trim(path.Clean(target), "/"), "/")
		if path.Clean(target) == "/" {
			rest = nil
		}
		parts = append(rest, parts...)
		cur = "/"
	}
	return cur, nil
}

// readOnlyStorage adapts an io.ReaderAt to go-diskfs's storage backend, refusing writes.
type readOnlyStorage struct {
	r *io.SectionReader
}

var _ backend.Storage = (*readOnlyStorage)(nil)

func (s readOnlyStorage) Stat() (fs.FileInfo, error) { return storageInfo{size: s.r.Size()}, nil }
func (s readOnlyStorage) Read(p []byte) (int, error) {
	return 0, errors.New("sequential read not supported")
}
func (s readOnlyStorage) ReadAt(p []byte, off int64) (int, error)   { return s.r.ReadAt(p, off) }
func (s readOnlyStorage) Seek(off int64, whence int) (int64, error) { return s.r.Seek(off, whence) }
func (s readOnlyStorage) Close() error                              { return nil }
func (s readOnlyStorage) Sys() (*os.File, error)                    { return nil, backend.ErrNotSuitable }
func (s readOnlyStorage) Writable() (backend.WritableFile, error) {
	return nil, backend.ErrIncorrectOpenMode
}
func (s readOnlyStorage) Path() string { return "" }

type storageInfo struct{ size int64 }

func (i storageInfo) Name() string       { return "image" }
func (i storageInfo) Size() int64        { return i.size }
func (i storageInfo) Mode() fs.FileMode  { return 0o444 }
func (i storageInfo) ModTime() time.Time { return time.Time{} }
func (i storageInfo) IsDir() bool        { return false }
func (i storageInfo) Sys() any           { return nil }

// ReadDir lists the names in directory name of the ext4 filesystem at [off, off+size) of r, without
// "." and "..".
func ReadDir(r io.ReaderAt, off, size int64, name string) ([]string, error) {
	f, err := Open(r, off, size)
	if err != nil {
		return nil, err
	}
	return f.ReadDir(name)
}
