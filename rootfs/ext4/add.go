package ext4

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hostos/hostos/rootfs/tree"
)

// Superblock fields Add reads for the space check.
const (
	sbInodesCount      = 0x00
	sbFreeBlocksLo     = 0x0c
	sbFreeInodes       = 0x10
	sbFreeBlocksHi     = 0x158
	inlineSymlinkBytes = 59
)

// Added says what Add wrote.
type Added struct {
	// Created counts the paths made (files, directories, symlinks, nodes and links), Replaced the
	// files whose content changed.
	Created, Replaced int
	// Bytes is the sum of the regular file sizes written.
	Bytes int64
}

// Changed tells whether Add wrote anything.
func (a Added) Changed() bool { return a.Created+a.Replaced > 0 }

// Free is the space left in an ext4 filesystem, as its superblock counts it.
type Free struct {
	Blocks, Inodes, BlockSize int64
}

// FreeSpace reads the free block and inode counts of the ext4 filesystem at offset off of r.
func FreeSpace(r interface {
	ReadAt([]byte, int64) (int, error)
}, off int64) (Free, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, off+superblockOffset); err != nil {
		return Free{}, fmt.Errorf("ext4 superblock at %d: %w", off, err)
	}
	if binary.LittleEndian.Uint16(sb[sbMagic:]) != magic {
		return Free{}, fmt.Errorf("ext4 superblock at %d: no ext4 magic", off)
	}
	log := binary.LittleEndian.Uint32(sb[sbLogBlockSize:])
	if log > 6 {
		return Free{}, fmt.Errorf("ext4 superblock at %d: bad block size", off)
	}
	f := Free{BlockSize: 1024 << log}
	f.Blocks = int64(binary.LittleEndian.Uint32(sb[sbFreeBlocksLo:]))
	if binary.LittleEndian.Uint32(sb[sbFeatureIncompat:])&incompat64bit != 0 {
		f.Blocks |= int64(binary.LittleEndian.Uint32(sb[sbFreeBlocksHi:])) << 32
	}
	f.Inodes = int64(binary.LittleEndian.Uint32(sb[sbFreeInodes:]))
	return f, nil
}

// addEntry is one path of the staged tree the filesystem does not have as it is.
type addEntry struct {
	rel     string // slash path inside the filesystem, without the leading slash
	host    string
	st      entryStat
	replace bool
}

// Add writes the staged tree root into the existing ext4 filesystem at offset off of the image file img,
// in one debugfs batch: every directory, file and symlink the filesystem lacks is created with the
// staged owner, mode and modification time, a regular file or symlink whose content differs replaces
// the filesystem's, and the tree's fixups are applied to the paths written. Directories already there
// are kept as they are; nothing else is touched. It first counts the blocks and inodes that takes
// against the filesystem's free counts and refuses, before writing, with ErrNoSpace and the shortfall.
// t, when not zero, is the time of the new inodes (as Options.Time). With nothing to write, the image is
// not opened for writing.
func Add(ctx context.Context, img string, off int64, root *tree.Staged, t time.Time) (Added, error) {
	var res Added
	if root == nil || root.Dir == "" {
		return res, errors.New("ext4 add: no staged tree")
	}
	f, err := os.Open(img)
	if err != nil {
		return res, fmt.Errorf("image %s: %w", img, err)
	}
	defer f.Close()
	size, err := FilesystemSize(f, off)
	if err != nil {
		return res, fmt.Errorf("image %s: %w", img, err)
	}
	free, err := FreeSpace(f, off)
	if err != nil {
		return res, fmt.Errorf("image %s: %w", img, err)
	}
	fsys, err := Open(f, off, size)
	if err != nil {
		return res, fmt.Errorf("image %s: %w", img, err)
	}

	// The entries to write, parents before children.
	var entries []addEntry
	fresh := map[string]bool{} // paths (and directories) that are new in the filesystem
	parentDirs := map[string]int64{}
	err = filepath.WalkDir(root.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root.Dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		e := addEntry{rel: rel, host: p}
		if e.st, err = lstat(p); err != nil {
			return err
		}
		kind := e.st.Mode & modeType
		if !fresh[path.Dir(rel)] {
			fi, err := fsys.Lstat("/" + rel)
			switch {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				return err
			default:
				same, err := sameEntry(fsys, rel, fi, p, kind, e.st.Size)
				if err != nil {
					return err
				}
				if same {
					return nil
				}
				e.replace = true
			}
		}
		if !e.replace {
			fresh[rel] = true
			parentDirs[path.Dir(rel)] += tree.DirentBytes(path.Base(rel))
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("add %s to %s: %w", root.Dir, img, err)
	}
	written := map[string]bool{}
	for _, e := range entries {
		written["/"+e.rel] = true
	}
	// Fixups of the paths written; nodes and hard links exist only as fixups and are new when their
	// directory is or when the filesystem lacks them.
	var fixups []tree.Fixup
	for _, fx := range root.Fixups {
		p := path.Clean(fx.Path)
		if (fx.Op == tree.OpMknod || fx.Op == tree.OpLink) && !written[p] {
			dir := path.Dir(p)
			if dir == "/" || !fresh[dir[1:]] {
				if _, err := fsys.Lstat(p); err == nil {
					continue
				}
			}
			written[p] = true
			res.Created++
			parentDirs[strings.TrimPrefix(dir, "/")] += tree.DirentBytes(path.Base(p))
		}
		if written[p] {
			fixups = append(fixups, fx)
		}
	}

	// Space: data blocks of the new files, directory blocks, directories that grow, xattr blocks.
	bs := free.BlockSize
	var blocks, inodes int64
	for _, e := range entries {
		switch e.st.Mode & modeType {
		case modeRegular:
			n := (e.st.Size + bs - 1) / bs
			blocks += n + n/8192 // extent tree blocks of fragmented files
			res.Bytes += e.st.Size
		case modeDir:
			blocks++
		case modeSymlink:
			if e.st.Size > inlineSymlinkBytes {
				blocks++
			}
		}
		if e.replace {
			res.Replaced++
		} else {
			res.Created++
			inodes++
		}
	}
	for _, fx := range fixups {
		switch fx.Op {
		case tree.OpMknod:
			inodes++
		case tree.OpXattr:
			if len(fx.Value)+len(fx.Name) > 64 {
				blocks++
			}
		}
	}
	for _, n := range parentDirs {
		blocks += (n+bs-1)/bs + 1
	}
	if !res.Changed() {
		return res, nil
	}
	blocks += blocks/100 + 16
	if blocks > free.Blocks || inodes > free.Inodes {
		short := (blocks - free.Blocks) * bs
		if short < 0 {
			short = 0
		}
		return res, &ShortError{Blocks: max(blocks-free.Blocks, 0), Inodes: max(inodes-free.Inodes, 0), BlockSize: bs,
			msg: fmt.Sprintf("resin data at %d of %s: %d MiB needed, %d MiB free (%d MiB short; %d inodes needed, %d free): %v",
				off, img, blocks*bs>>20, free.Blocks*bs>>20, (short+mib-1)/mib, inodes, free.Inodes, ErrNoSpace)}
	}

	cmds, err := addCommands(entries, fixups, root, t)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(cmds.valueDir)
	f.Close()
	d := Debugfs{Image: img, Offset: off, Time: t}
	if err := d.Apply(ctx, cmds.lines); err != nil {
		return res, fmt.Errorf("add %s to %s: %w", root.Dir, img, err)
	}
	return res, nil
}

// sameEntry tells whether the filesystem's entry rel already is what the staged path host holds; a
// change of type is an error.
func sameEntry(fsys *FS, rel string, fi fs.FileInfo, host string, kind uint32, size int64) (bool, error) {
	m := fi.Mode()
	switch kind {
	case modeDir:
		if m.IsDir() {
			return true, nil
		}
	case modeRegular:
		if m.IsRegular() {
			if fi.Size() != size {
				return false, nil
			}
			have, err := fsys.ReadFile("/" + rel)
			if err != nil {
				return false, err
			}
			want, err := os.ReadFile(host)
			if err != nil {
				return false, err
			}
			return bytes.Equal(have, want), nil
		}
	case modeSymlink:
		if m&fs.ModeSymlink != 0 {
			have, err := fsys.ReadLink("/" + rel)
			if err != nil {
				return false, err
			}
			want, err := os.Readlink(host)
			if err != nil {
				return false, err
			}
			return have == want, nil
		}
	}
	return false, fmt.Errorf("/%s: a %s in the filesystem, another type in the tree", rel, m.Type())
}

// addCommands turns the entries and fixups into one debugfs batch.
func addCommands(entries []addEntry, fixups []tree.Fixup, root *tree.Staged, t time.Time) (*commands, error) {
	var lines []string
	cwd := "/"
	for _, e := range entries {
		p, err := Quote("/" + e.rel)
		if err != nil {
			return nil, err
		}
		dir := "/" + path.Dir(e.rel)
		if path.Dir(e.rel) == "." {
			dir = "/"
		}
		base, err := Quote(path.Base(e.rel))
		if err != nil {
			return nil, err
		}
		if dir != cwd {
			qd, err := Quote(dir)
			if err != nil {
				return nil, err
			}
			lines = append(lines, "cd "+qd)
			cwd = dir
		}
		if e.replace {
			lines = append(lines, "rm "+base)
		}
		kind := e.st.Mode & modeType
		switch kind {
		case modeDir:
			lines = append(lines, "mkdir "+base)
		case modeRegular:
			h, err := Quote(e.host)
			if err != nil {
				return nil, err
			}
			lines = append(lines, "write "+h+" "+base)
		case modeSymlink:
			target, err := os.Readlink(e.host)
			if err != nil {
				return nil, fmt.Errorf("staged %s: %w", e.rel, err)
			}
			qt, err := Quote(target)
			if err != nil {
				return nil, err
			}
			lines = append(lines, "symlink "+base+" "+qt)
		default:
			return nil, fmt.Errorf("staged %s: not a directory, regular file or symlink", e.rel)
		}
		if kind != modeSymlink {
			lines = append(lines, fmt.Sprintf("sif %s mode 0%o", p, e.st.Mode))
		}
		lines = append(lines, fmt.Sprintf("sif %s uid %d", p, e.st.Uid), fmt.Sprintf("sif %s gid %d", p, e.st.Gid),
			fmt.Sprintf("sif %s mtime @%d", p, e.st.Mtime))
		if !t.IsZero() {
			stamp := "@" + strconv.FormatInt(t.Unix(), 10)
			lines = append(lines, "sif "+p+" atime "+stamp, "sif "+p+" ctime "+stamp)
		}
	}
	if cwd != "/" {
		lines = append(lines, "cd /")
	}
	c, err := fixupCommands(&tree.Staged{Dir: root.Dir, Fixups: fixups}, time.Time{})
	if err != nil {
		return nil, err
	}
	c.lines = append(lines, c.lines...)
	return c, nil
}
