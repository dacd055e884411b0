// Package tree turns a root filesystem source into a staging directory plus the fixups an unprivileged builder cannot apply itself.
package tree

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"archive/tar"
)

// Kind names the format of a root filesystem source.
type Kind string

// The source kinds Detect recognises.
const (
	KindDir           Kind = "dir"
	KindTar           Kind = "tar"
	KindOCI           Kind = "oci"
	KindDockerArchive Kind = "docker-archive"
	KindExt4          Kind = "ext4"
)

// ErrUnknownFormat is returned by Detect for a file that is no known source format.
var ErrUnknownFormat = errors.New("unknown format")

// Compression magic numbers.
var (
	magicGzip = []byte{0x1f, 0x8b}
	magicXz   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

const (
	ext4MagicOffset = 1024 + 56
	ext4Magic       = 0xef53
	tarMagicOffset  = 257
)

// Detect tells the kind of the root filesystem source at path from its content, never from its name.
func Detect(path string) (Kind, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("root filesystem source %s: %w", path, err)
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "oci-layout")); err == nil {
			return KindOCI, nil
		}
		d, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("root filesystem source %s: %w", path, err)
		}
		defer d.Close()
		if _, err := d.ReadDir(1); err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("root filesystem source %s: %w", path, err)
		}
		return KindDir, nil
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("root filesystem source %s: not a regular file or directory: %w", path, ErrUnknownFormat)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("root filesystem source %s: %w", path, err)
	}
	defer f.Close()
	head := make([]byte, ext4MagicOffset+2)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("root filesystem source %s: %w", path, err)
	}
	head = head[:n]
	switch {
	case len(head) >= ext4MagicOffset+2 && binary.LittleEndian.Uint16(head[ext4MagicOffset:]) == ext4Magic:
		return KindExt4, nil
	case compressedHead(head):
		return KindTar, nil
	case len(head) >= tarMagicOffset+5 && string(head[tarMagicOffset:tarMagicOffset+5]) == "ustar":
		return detectPlainTar(f, path)
	}
	return "", fmt.Errorf("root filesystem source %s: %w", path, ErrUnknownFormat)
}

// detectPlainTar tells a docker save archive (manifest.json at the top) from a root filesystem tar.
func detectPlainTar(f *os.File, path string) (Kind, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("root filesystem source %s: %w", path, err)
	}
	var manifest, ociLayout bool
	tr := tar.NewReader(&skipReader{f: f, buf: make([]byte, 16<<10)})
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("root filesystem source %s: tar archive: %w", path, err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case name == "manifest.json" && h.Typeflag == tar.TypeReg:
			var m []struct {
				Config string
				Layers []string
			}
			if json.NewDecoder(tr).Decode(&m) == nil && len(m) > 0 && m[0].Config != "" {
				manifest = true
			}
		case name == "oci-layout":
			ociLayout = true
		case !manifest && !ociLayout && systemDirs[strings.SplitN(name, "/", 2)[0]]:
			// A docker save or OCI layout archive holds no system directory at its top: a root
			// filesystem, whose other headers need not be read.
			return KindTar, nil
		}
	}
	switch {
	case manifest:
		return KindDockerArchive, nil
	case ociLayout:
		return "", fmt.Errorf("root filesystem source %s: an OCI layout archive; unpack it into a directory first: %w", path, ErrUnknownFormat)
	}
	return KindTar, nil
}

// systemDirs are the top directories of a root filesystem that no image archive has at its top.
var systemDirs = map[string]bool{"bin": true, "boot": true, "dev": true, "etc": true, "lib": true, "opt": true,
	"proc": true, "run": true, "sbin": true, "srv": true, "sys": true, "tmp": true, "usr": true, "var": true}

// skipReader reads a file through a small buffer and seeks by moving its offset, so that archive/tar
// walking the headers of a large archive reads the few pages holding them, often several at once, with
// one system call each, where reading the file itself takes several for every entry.
type skipReader struct {
	f        io.ReaderAt
	buf      []byte
	off, pos int64 // the file offsets of buf[0] and of the next byte to read
	n        int   // bytes of buf that hold data
	// end, when not 0, is the offset of the end of the region read, a tar archive inside the file.
	end int64
}

func (r *skipReader) Read(p []byte) (int, error) {
	if r.end > 0 && r.pos >= r.end {
		return 0, io.EOF
	}
	if r.pos < r.off || r.pos >= r.off+int64(r.n) {
		b := r.buf
		if r.end > 0 {
			b = b[:min(int64(len(b)), r.end-r.pos)]
		}
		n, err := r.f.ReadAt(b, r.pos)
		if n == 0 {
			return 0, err
		}
		r.off, r.n = r.pos, n
	}
	n := copy(p, r.buf[r.pos-r.off:r.n])
	r.pos += int64(n)
	return n, nil
}

func (r *skipReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	default:
		return r.pos, errors.New("seek: only from the start or the current offset")
	}
	if offset < 0 {
		return r.pos, errors.New("seek: negative offset")
	}
	r.pos = offset
	return r.pos, nil
}

// Op is the kind of a Fixup.
type Op int

// The fixup operations, in the order Staged.Fixups lists them.
const (
	// OpMknod creates the device node or fifo Path (Mode holds the file type, Major and Minor the device).
	OpMknod Op = iota + 1
	// OpLink adds the hard link Path to the existing Target; Links is the link count afterwards.
	OpLink
	// OpOwner sets the owner UID and group GID of Path.
	OpOwner
	// OpMode sets the whole mode (file type and permission bits) of Path.
	OpMode
	// OpXattr sets the extended attribute Name of Path to Value.
	OpXattr
	// OpMtime sets the modification time of Path to Time.
	OpMtime
)

func (o Op) String() string {
	switch o {
	case OpMknod:
		return "mknod"
	case OpLink:
		return "link"
	case OpOwner:
		return "owner"
	case OpMode:
		return "mode"
	case OpXattr:
		return "xattr"
	case OpMtime:
		return "mtime"
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// Fixup is one change the filesystem needs after it was built from the staging directory.
type Fixup struct {
	Op Op
	// Path is absolute inside the filesystem, "/" for its root.
	Path         string
	UID, GID     uint32
	Mode         uint32
	Major, Minor uint32
	Target       string
	Links        int
	Name         string
	Value        []byte
	Time         time.Time
}

// Staged is a root filesystem ready for mkfs.ext4 -d: a directory and the fixups to apply afterwards.
type Staged struct {
	// Dir is the directory to build the filesystem from.
	Dir string
	// Fixups are listed in the order they must be applied.
	Fixups []Fixup
	// Files counts regular files (inodes), Dirs directories, Entries every path including links and nodes.
	Files, Dirs, Entries int
	// Bytes is the sum of the regular file sizes.
	Bytes int64

	// usage holds the byte sizes that occupy data blocks: regular files, directories, long symlinks.
	usage []int64
}

// fastSymlinkMax is the longest symlink target ext4 stores inside the inode.
const fastSymlinkMax = 59

// DataBytes is the space the data of the tree takes in a filesystem of the given block size.
func (s *Staged) DataBytes(blockSize int) int64 {
	if blockSize <= 0 {
		return 0
	}
	bs := int64(blockSize)
	var total int64
	for _, n := range s.usage {
		total += (n + bs - 1) / bs * bs
	}
	return total
}

// dirent sizes in an ext4 directory block: 8 bytes of header and the name padded to 4.
func direntSize(name string) int64 { return 8 + int64(len(name)+3)/4*4 }

// Scan counts a directory used as a source as it is, for the fit check; it copies nothing.
func Scan(dir string) (*Staged, error) {
	s := &Staged{Dir: dir}
	dirBytes := map[string]int64{}
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.ContainsAny(d.Name(), "\n\r") {
			return fmt.Errorf("%s: file name holds a line break", p)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		s.Entries++
		if p != dir {
			dirBytes[filepath.Dir(p)] += direntSize(d.Name())
		}
		switch {
		case info.IsDir():
			s.Dirs++
			dirBytes[p] += 24
		case info.Mode().IsRegular():
			if key, ok := hardLinkKey(info); ok {
				if seen[key] {
					return nil
				}
				seen[key] = true
			}
			s.Files++
			s.Bytes += info.Size()
			s.usage = append(s.usage, info.Size())
		case info.Mode()&fs.ModeSymlink != 0 && info.Size() > fastSymlinkMax:
			s.usage = append(s.usage, info.Size())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan root filesystem directory %s: %w", dir, err)
	}
	for _, n := range dirBytes {
		s.usage = append(s.usage, n)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("scan root filesystem directory %s: %w", dir, err)
	}
	if uid, gid, perm, ok := ownerPerm(fi); ok {
		uid, gid := rootOwner(uid, gid, uint32(os.Getuid()))
		s.Fixups = rootFixups(uid, gid, perm, fi.ModTime())
	}
	return s, nil
}

// rootOwner is the owner given to / of a root filesystem staged in a directory owned by uid:gid, when
// user me builds it. A root directory owned by the unprivileged user building the image is that user's
// staging area (under fakeroot or pseudo, as in a Yocto build, Go sees the real owner where mkfs.ext4
// sees root): a system's / belongs to root.
func rootOwner(uid, gid, me uint32) (uint32, uint32) {
	if me != 0 && uid == me {
		return 0, 0
	}
	return uid, gid
}
