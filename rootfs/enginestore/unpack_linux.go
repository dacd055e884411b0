package enginestore

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostos/hostos/rootfs/tree"
)

// unpacker applies one layer tar to an empty layer directory the way the engine's overlay2 driver
// does (whiteouts become 0:0 character devices, opaque markers an xattr), staging what an unprivileged
// process can create and listing the rest as fixups.
type unpacker struct {
	dir    string // host path of the layer directory
	fsDir  string // its absolute path inside the filesystem
	root   int
	nodes  map[string]*entry
	newest time.Time
}

func newUnpacker(dir, fsDir string) (*unpacker, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("layer directory: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("layer directory: %w", err)
	}
	return &unpacker{dir: dir, fsDir: fsDir, root: fd, nodes: map[string]*entry{}}, nil
}

func (u *unpacker) close() { unix.Close(u.root) }

// parent opens the directory holding name, creating missing directories (as the engine does, 0755
// root-owned) and refusing symlinks on the way.
func (u *unpacker) parent(name string, mtime time.Time) (int, string, error) {
	fd, err := unix.Dup(u.root)
	if err != nil {
		return -1, "", err
	}
	dir, base := path.Split(name)
	if dir == "" {
		return fd, base, nil
	}
	walked := ""
	for _, c := range strings.Split(strings.TrimSuffix(dir, "/"), "/") {
		walked = path.Join(walked, c)
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			if _, ok := u.nodes[walked]; ok {
				// A device node or whiteout, which exists only as a fixup.
				err = unix.ENOTDIR
			} else if err = unix.Mkdirat(fd, c, 0o700); err == nil {
				u.nodes[walked] = &entry{typ: tar.TypeDir, perm: 0o755, mtime: mtime}
				next, err = unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		unix.Close(fd)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, "", fmt.Errorf("entry %q: parent %q is not a directory: %w", name, walked, errUnsafePath)
		}
		if err != nil {
			return -1, "", fmt.Errorf("entry %q: parent %q: %w", name, walked, err)
		}
		fd = next
	}
	return fd, base, nil
}

// forget drops the wanted state of name and everything under it.
func (u *unpacker) forget(name string) {
	delete(u.nodes, name)
	prefix := name + "/"
	for p := range u.nodes {
		if strings.HasPrefix(p, prefix) {
			delete(u.nodes, p)
		}
	}
}

// remove deletes whatever is at base in the directory pfd (name is its path for messages).
func (u *unpacker) remove(pfd int, base, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			u.forget(name)
			return nil
		}
		return fmt.Errorf("entry %q: %w", name, err)
	}
	var err error
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		// The parent chain was opened without following symlinks, so this path is inside the layer.
		err = os.RemoveAll(filepath.Join(u.dir, filepath.FromSlash(name)))
	} else {
		err = unix.Unlinkat(pfd, base, 0)
	}
	if err != nil {
		return fmt.Errorf("entry %q: replace: %w", name, err)
	}
	u.forget(name)
	return nil
}

// add applies one entry of the layer tar.
func (u *unpacker) add(h *tar.Header, r io.Reader) error {
	switch h.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg, tar.TypeRegA, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return fmt.Errorf("entry %q: unsupported type %q", h.Name, h.Typeflag)
	}
	name, err := tree.CleanName(h.Name)
	if err != nil {
		return err
	}
	if h.ModTime.After(u.newest) {
		u.newest = h.ModTime
	}
	if name == "" {
		// The engine skips the layer's root entry: the layer directory keeps its own metadata.
		return nil
	}
	base := path.Base(name)
	if base == opaqueMarker {
		dir := path.Dir(name)
		if dir == "." {
			dir = ""
		}
		if dir != "" {
			pfd, _, err := u.parent(dir+"/x", h.ModTime)
			if err != nil {
				return err
			}
			unix.Close(pfd)
		}
		d, ok := u.nodes[dir]
		if !ok {
			d = &entry{typ: tar.TypeDir, perm: 0o755, mtime: h.ModTime}
			u.nodes[dir] = d
		}
		d.setXattr(opaqueXattr, []byte("y"))
		return nil
	}
	pfd, pbase, err := u.parent(name, h.ModTime)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if orig, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
		if orig == "" || orig == "." || orig == ".." {
			return fmt.Errorf("entry %q: bad whiteout name", h.Name)
		}
		target := path.Join(path.Dir(name), orig)
		if err := u.remove(pfd, orig, target); err != nil {
			return err
		}
		u.nodes[target] = &entry{typ: tar.TypeChar, uid: uint32(h.Uid), gid: uint32(h.Gid), mtime: h.ModTime}
		return nil
	}

	e := metaOf(h)
	var st unix.Stat_t
	exists := unix.Fstatat(pfd, pbase, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	if exists && e.typ == tar.TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if old := u.nodes[name]; old != nil && old.xattrs[opaqueXattr] != nil {
			e.setXattr(opaqueXattr, old.xattrs[opaqueXattr])
		}
		u.nodes[name] = e
		return nil
	}
	if err := u.remove(pfd, pbase, name); err != nil {
		return err
	}
	switch e.typ {
	case tar.TypeReg:
		fd, err := unix.Openat(pfd, pbase, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
		f := os.NewFile(uintptr(fd), name)
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, pbase, 0o700); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, pfd, pbase); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	case tar.TypeFifo:
		if err := unix.Mknodat(pfd, pbase, unix.S_IFIFO|0o600, 0); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	case tar.TypeLink:
		target, err := tree.CleanName(h.Linkname)
		if err != nil {
			return fmt.Errorf("entry %q: hard link: %w", h.Name, err)
		}
		t, ok := u.nodes[target]
		if ok && t.typ == tar.TypeLink {
			target, t = t.link, u.nodes[t.link]
		}
		switch {
		case t == nil || target == "":
			return fmt.Errorf("entry %q: hard link to missing %q", h.Name, h.Linkname)
		case t.typ == tar.TypeDir:
			return fmt.Errorf("entry %q: hard link to directory %q", h.Name, h.Linkname)
		case !t.staged():
			return fmt.Errorf("entry %q: hard link to device node %q: not supported", h.Name, h.Linkname)
		}
		tfd, tbase, err := u.parent(target, h.ModTime)
		if err != nil {
			return err
		}
		err = unix.Linkat(tfd, tbase, pfd, pbase, 0)
		unix.Close(tfd)
		if err != nil {
			return fmt.Errorf("entry %q: hard link: %w", h.Name, err)
		}
		e = &entry{typ: tar.TypeLink, link: target}
		// The engine applies a link's owner and xattrs to the shared inode.
		t.uid, t.gid = uint32(h.Uid), uint32(h.Gid)
		for k, v := range metaOf(h).xattrs {
			t.setXattr(k, v)
		}
	}
	u.nodes[name] = e
	return nil
}

// finish sets the staged modes and times and returns the fixups of the layer, how many nodes exist only
// as fixups, and the engine's size of the layer.
func (u *unpacker) finish() (fixups []tree.Fixup, size int64, err error) {
	root, ok := u.nodes[""]
	if !ok {
		root = &entry{typ: tar.TypeDir}
		u.nodes[""] = root
	}
	// The layer directory itself, whose root entry the engine skips.
	root.perm, root.uid, root.gid, root.mtime = 0o755, 0, 0, u.newest
	paths := make([]string, 0, len(u.nodes))
	for p := range u.nodes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var mknods, attrs, mtimes []tree.Fixup
	touched := map[string]bool{}
	for _, p := range paths {
		e := u.nodes[p]
		abs := u.fsDir
		if p != "" {
			abs += "/" + p
		}
		switch e.typ {
		case tar.TypeLink:
			continue
		case tar.TypeChar, tar.TypeBlock:
			mode := uint32(unix.S_IFCHR)
			if e.typ == tar.TypeBlock {
				mode = unix.S_IFBLK
			}
			mknods = append(mknods, tree.Fixup{Op: tree.OpMknod, Path: abs, Mode: mode, Major: e.major, Minor: e.minor})
			attrs = append(attrs,
				tree.Fixup{Op: tree.OpOwner, Path: abs, UID: e.uid, GID: e.gid},
				tree.Fixup{Op: tree.OpMode, Path: abs, Mode: mode | e.perm})
			attrs = append(attrs, xattrFixups(abs, e)...)
			mtimes = append(mtimes, tree.Fixup{Op: tree.OpMtime, Path: abs, Time: e.mtime})
			touched[path.Dir(p)] = true
			continue
		}
		size += e.size
		staged := e.perm | 0o400
		if e.typ == tar.TypeDir {
			staged = e.perm | 0o700
		}
		if e.typ != tar.TypeSymlink {
			if err := u.at(p, func(fd int, base string) error { return unix.Fchmodat(fd, base, staged, 0) }); err != nil {
				return nil, 0, err
			}
		}
		var st unix.Stat_t
		if err := u.at(p, func(fd int, base string) error {
			return unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		}); err != nil {
			return nil, 0, err
		}
		if st.Uid != e.uid || st.Gid != e.gid {
			attrs = append(attrs, tree.Fixup{Op: tree.OpOwner, Path: abs, UID: e.uid, GID: e.gid})
		}
		if e.typ != tar.TypeSymlink && st.Mode&0o7777 != e.perm {
			attrs = append(attrs, tree.Fixup{Op: tree.OpMode, Path: abs, Mode: st.Mode&unix.S_IFMT | e.perm})
		}
		attrs = append(attrs, xattrFixups(abs, e)...)
		ts := unix.NsecToTimespec(e.mtime.UnixNano())
		if err := u.at(p, func(fd int, base string) error {
			return unix.UtimesNanoAt(fd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
		}); err != nil {
			return nil, 0, err
		}
	}
	dirs := make([]string, 0, len(touched))
	for d := range touched {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		if d == "." {
			d = ""
		}
		abs := u.fsDir
		if d != "" {
			abs += "/" + d
		}
		mtimes = append(mtimes, tree.Fixup{Op: tree.OpMtime, Path: abs, Time: u.nodes[d].mtime})
	}
	return append(append(mknods, attrs...), mtimes...), size, nil
}

func xattrFixups(abs string, e *entry) []tree.Fixup {
	names := make([]string, 0, len(e.xattrs))
	for k := range e.xattrs {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]tree.Fixup, 0, len(names))
	for _, k := range names {
		out = append(out, tree.Fixup{Op: tree.OpXattr, Path: abs, Name: k, Value: e.xattrs[k]})
	}
	return out
}

// at opens the parent of a path of the layer (verified as when unpacking) and calls fn on it.
func (u *unpacker) at(p string, fn func(fd int, base string) error) error {
	if p == "" {
		if err := fn(u.root, "."); err != nil {
			return fmt.Errorf("layer directory: %w", err)
		}
		return nil
	}
	pfd, base, err := u.parent(p, time.Time{})
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := fn(pfd, base); err != nil {
		return fmt.Errorf("layer path %q: %w", p, err)
	}
	return nil
}
