// Package disk is the one abstraction hostos uses for image files and block devices alike.
package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Disk is a random-access device: an image file or a block device.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	// Size is the size in bytes.
	Size() int64
	// SectorSize is the logical sector size in bytes.
	SectorSize() int
	// Sync flushes written data to stable storage.
	Sync() error
	// Path names the file or device, for external tools that take a path and an offset.
	Path() string
	Close() error
}

// File is a Disk backed by an image file or a block device node.
type File struct {
	f          *os.File
	size       int64
	sectorSize int
}

var _ Disk = (*File)(nil)

// DefaultSectorSize is the sector size of image files.
const DefaultSectorSize = 512

// ErrBusy means another process has the image or device open for writing.
var ErrBusy = errors.New("in use by another writer")

// Open opens an image file or block device; writable opens it read-write. Anything else (a FIFO, a
// character device, a socket, a directory) is refused without blocking: the open itself does not wait
// for a FIFO's writer.
//
// A writable Open takes an exclusive flock on the file itself, held until Close: every hostos writer of
// an image or device (update, configure, repair, preload) goes through here, so two of them never write
// the same disk at once; the second fails at once with an error wrapping ErrBusy. The lock needs no lock
// file and vanishes with the process, however it ends (flock on Linux and macOS, LockFileEx on Windows).
// Readers take no lock.
func Open(path string, writable bool) (*File, error) {
	flag := os.O_RDONLY | openNoBlock
	if writable {
		flag = os.O_RDWR | openNoBlock
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	f.Fd() // puts the descriptor back in blocking mode
	d := &File{f: f, size: fi.Size(), sectorSize: DefaultSectorSize}
	switch {
	case fi.Mode().IsRegular():
	case isDevice(fi.Mode()):
		size, ss, err := deviceGeometry(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		d.size, d.sectorSize = size, ss
	case fi.IsDir():
		f.Close()
		return nil, fmt.Errorf("%s: is a directory, not a disk image", path)
	default:
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file or block device", path)
	}
	if writable {
		if err := TryLock(f, false); err != nil {
			f.Close()
			if errors.Is(err, ErrLocked) {
				return nil, fmt.Errorf("%s: %w (another hostos update, configure or preload)", path, ErrBusy)
			}
			return nil, fmt.Errorf("%s: lock: %w", path, err)
		}
	}
	return d, nil
}

// DeviceSize returns the size in bytes and the logical sector size of the disk device open as f (BLKGETSIZE64
// and BLKSSZGET on Linux, DKIOCGETBLOCKCOUNT and DKIOCGETBLOCKSIZE on macOS; an error elsewhere).
func DeviceSize(f *os.File) (int64, int, error) { return deviceGeometry(f) }

// Create creates (or truncates) a sparse image file of the given size.
func Create(path string, size int64) (*File, error) {
	if size <= 0 {
		return nil, errors.New("image size must be positive")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	return &File{f: f, size: size, sectorSize: DefaultSectorSize}, nil
}

func (d *File) ReadAt(p []byte, off int64) (int, error)  { return d.f.ReadAt(p, off) }
func (d *File) WriteAt(p []byte, off int64) (int, error) { return d.f.WriteAt(p, off) }
func (d *File) Size() int64                              { return d.size }
func (d *File) SectorSize() int                          { return d.sectorSize }

// Sync makes what was written durable: its data and what reading it back needs (fdatasync on Linux, not
// the file's times, whose journal commit made each sync of an image file cost ten times as much).
func (d *File) Sync() error { return syncData(d.f) }

// StartWriteback asks the kernel to start writing [off, off+n) to the device without waiting for it, so
// that a later Sync has little left to do (sync_file_range SYNC_FILE_RANGE_WRITE on Linux, nothing
// elsewhere). It is a hint: errors are ignored, and Sync is still what makes data durable.
func (d *File) StartWriteback(off, n int64) { startWriteback(d.f, off, n) }
func (d *File) Path() string                { return d.f.Name() }
func (d *File) Close() error                { return d.f.Close() }

// Section returns a reader over [off, off+n) of d.
func Section(d io.ReaderAt, off, n int64) *io.SectionReader { return io.NewSectionReader(d, off, n) }
