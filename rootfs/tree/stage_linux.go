package tree

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// node is the wanted state of one path of the tree.
type node struct {
	typ          byte // tar type flag
	perm         uint32
	uid, gid     uint32
	mtime        time.Time
	major, minor uint32
	xattrs       map[string][]byte
	size         int64
	// link is the path of the first name of a hard-linked inode; linkMeta its metadata at link time.
	link     string
	linkMeta *node
	// settled tells a regular file whose mtime is set and whose owner and mode, in uid, gid and mode,
	// were read through its descriptor once written: finish need not look it up by path.
	settled          bool
	diskUID, diskGID uint32
	diskMode         uint32
	// layer is the index of the image layer that staged the path, lowest first (0 for a tar archive).
	layer int
}

func (n *node) staged() bool { return n.typ != tar.TypeChar && n.typ != tar.TypeBlock }

type stager struct {
	dir  string
	root int
	// nodes is the wanted state by path; kids lists the paths directly under each directory path.
	nodes map[string]*node
	kids  map[string]map[string]struct{}
	// dirs holds open descriptors of directories already walked, by path ("" is root), at most
	// about maxOpenDirs of them.
	dirs   map[string]int
	newest time.Time
	buf    []byte
	// umask is the process's file mode creation mask: a file created with a mode it does not clear needs
	// no chmod afterwards. It is 0o7777 when unknown.
	umask uint32
	// layer is the index of the image layer being staged, lowest first.
	layer int
	// freed counts what the paths removed since took, as stagedSize counts it.
	freed int64
}

// maxOpenDirs bounds the directory descriptors a stager keeps open: archives list a directory's entries
// together, so a few suffice, and the process keeps room for many below the usual limit of 1024.
const maxOpenDirs = 256

func newStager(dir string) (*stager, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("staging directory %s: %w", dir, err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("staging directory %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), dir)
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, fmt.Errorf("staging directory %s: %w", dir, err)
	}
	if len(names) > 0 {
		f.Close()
		return nil, fmt.Errorf("staging directory %s: not empty", dir)
	}
	root, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("staging directory %s: %w", dir, err)
	}
	return &stager{dir: dir, root: root, nodes: map[string]*node{}, kids: map[string]map[string]struct{}{},
		dirs: map[string]int{"": root}, buf: make([]byte, 1<<20), umask: umask()}, nil
}

// umask reads the process's file mode creation mask from /proc without changing it (umask(2) would, for
// every thread at once), or returns 0o7777 when /proc does not tell it.
func umask() uint32 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0o7777
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return uint32(m)
			}
		}
	}
	return 0o7777
}

func (s *stager) close() {
	for _, fd := range s.dirs {
		unix.Close(fd)
	}
	s.dirs = nil
}

// set records the wanted state of name.
func (s *stager) set(name string, n *node) {
	s.nodes[name] = n
	if name == "" {
		return
	}
	dir, _ := split(name)
	k := s.kids[dir]
	if k == nil {
		k = map[string]struct{}{}
		s.kids[dir] = k
	}
	k[name] = struct{}{}
}

// forget drops the wanted state of name and everything under it.
func (s *stager) forget(name string) {
	for k := range s.kids[name] {
		s.forget(k)
	}
	delete(s.kids, name)
	if n := s.nodes[name]; n != nil {
		s.freed += stagedSize(n.typ == tar.TypeReg, n.size)
	}
	delete(s.nodes, name)
	if name != "" {
		dir, _ := split(name)
		delete(s.kids[dir], name)
	}
}

// trimDirs closes the kept directory descriptors, but the root's, when there are too many.
func (s *stager) trimDirs() {
	if len(s.dirs) <= maxOpenDirs {
		return
	}
	for p, fd := range s.dirs {
		if p != "" {
			unix.Close(fd)
			delete(s.dirs, p)
		}
	}
}

// dropDirs closes the kept descriptors of the directory name and of those under it, about to be removed.
func (s *stager) dropDirs(name string) {
	prefix := name + "/"
	for p, fd := range s.dirs {
		if p == name || strings.HasPrefix(p, prefix) {
			unix.Close(fd)
			delete(s.dirs, p)
		}
	}
}

// dirFD opens the directory dir, creating it and its missing parents and refusing symlinks on the way.
// The descriptor stays the stager's: callers do not close it.
func (s *stager) dirFD(dir, name string, mtime time.Time) (int, error) {
	if fd, ok := s.dirs[dir]; ok {
		return fd, nil
	}
	up, base := split(dir)
	pfd, err := s.dirFD(up, name, mtime)
	if err != nil {
		return -1, err
	}
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, 0)
	if errors.Is(err, unix.ENOENT) {
		if err = unix.Mkdirat(pfd, base, 0o700); err == nil {
			s.set(dir, &node{typ: tar.TypeDir, perm: 0o755, mtime: mtime, layer: s.layer})
			fd, err = unix.Openat(pfd, base, flags, 0)
		}
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return -1, fmt.Errorf("entry %q: parent %q is not a directory: %w", name, dir, ErrUnsafePath)
	}
	if err != nil {
		return -1, fmt.Errorf("entry %q: parent %q: %w", name, dir, err)
	}
	s.dirs[dir] = fd
	return fd, nil
}

// parent opens the directory holding name (see dirFD) and returns it with the last element of name.
func (s *stager) parent(name string, mtime time.Time) (int, string, error) {
	dir, base := split(name)
	fd, err := s.dirFD(dir, name, mtime)
	return fd, base, err
}

func metaOf(h *tar.Header) *node {
	n := &node{
		typ:   h.Typeflag,
		perm:  uint32(h.Mode) & 0o7777,
		uid:   uint32(h.Uid),
		gid:   uint32(h.Gid),
		mtime: h.ModTime,
		major: uint32(h.Devmajor),
		minor: uint32(h.Devminor),
		size:  h.Size,
	}
	if n.typ == tar.TypeRegA {
		n.typ = tar.TypeReg
	}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if n.xattrs == nil {
				n.xattrs = map[string][]byte{}
			}
			n.xattrs[name] = []byte(v)
		}
	}
	return n
}

func (s *stager) add(h *tar.Header, r io.Reader) error {
	switch h.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg, tar.TypeRegA, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return fmt.Errorf("entry %q: unsupported type %q", h.Name, h.Typeflag)
	}
	name, err := CleanName(h.Name)
	if err != nil {
		return err
	}
	n := metaOf(h)
	n.layer = s.layer
	if h.ModTime.After(s.newest) {
		s.newest = h.ModTime
	}
	if name == "" {
		if n.typ != tar.TypeDir {
			return fmt.Errorf("entry %q: the root must be a directory", h.Name)
		}
		s.set("", n)
		return nil
	}
	s.trimDirs()
	pfd, base, err := s.parent(name, h.ModTime)
	if err != nil {
		return err
	}

	// Everything on disk under the root is in s.nodes: a name that is not was never staged, and is
	// created without looking first. A name seen before is replaced, or kept when a directory again.
	if _, seen := s.nodes[name]; seen {
		var st unix.Stat_t
		exists := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
		if exists && n.typ == tar.TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			s.set(name, n)
			return nil
		}
		if err := s.remove(pfd, base, name); err != nil {
			return fmt.Errorf("entry %q: replace: %w", h.Name, err)
		}
	}

	switch n.typ {
	case tar.TypeReg:
		// Created with its final mode, which the umask leaves alone for most files: no chmod then.
		mode := n.perm | 0o400
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
		if err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
		if b, ok := r.(*fileBody); ok && b.Size >= sendMin {
			err = s.sendBody(fd, b)
		} else if b, ok := r.(*streamBody); ok {
			err = b.stream.writeBody(fd, b.Size)
		} else {
			err = s.writeBody(fd, r, h.Size)
		}
		if err == nil && mode&s.umask != 0 {
			err = unix.Fchmod(fd, mode)
		}
		if err == nil {
			err = settle(fd, n)
		}
		if cerr := unix.Close(fd); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, pfd, base); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	case tar.TypeFifo:
		err := unix.Mknodat(pfd, base, unix.S_IFIFO|n.perm, 0)
		if err == nil {
			err = unix.Fchmodat(pfd, base, n.perm, 0)
		}
		if err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	case tar.TypeLink:
		target, err := CleanName(h.Linkname)
		if err != nil {
			return fmt.Errorf("entry %q: hard link: %w", h.Name, err)
		}
		for {
			t, ok := s.nodes[target]
			if !ok || target == "" {
				return fmt.Errorf("entry %q: hard link to missing %q", h.Name, h.Linkname)
			}
			if t.typ != tar.TypeLink {
				break
			}
			target = t.link
		}
		t := s.nodes[target]
		if t.typ == tar.TypeDir {
			return fmt.Errorf("entry %q: hard link to directory %q", h.Name, h.Linkname)
		}
		meta := *t
		n = &node{typ: tar.TypeLink, link: target, linkMeta: &meta}
		if t.staged() {
			tfd, tbase, err := s.parent(target, h.ModTime)
			if err != nil {
				return err
			}
			err = unix.Linkat(tfd, tbase, pfd, base, 0)
			if err != nil {
				return fmt.Errorf("entry %q: hard link: %w", h.Name, err)
			}
		}
	}
	s.set(name, n)
	return nil
}

// settle sets the mtime of the regular file fd just written and keeps its owner and mode in n, through
// the descriptor: finish, which runs once the whole stream is read, then has two system calls less to
// make by path for it, while a decompressor may still be running on the other core.
func settle(fd int, n *node) error {
	ts := [2]unix.Timespec{unix.NsecToTimespec(n.mtime.UnixNano()), unix.NsecToTimespec(n.mtime.UnixNano())}
	// utimensat with no path sets the times of fd itself (futimens).
	if _, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0); e != 0 {
		return e
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	n.settled, n.diskUID, n.diskGID, n.diskMode = true, st.Uid, st.Gid, st.Mode
	return nil
}

// sendMin is the smallest body sendBody copies; a smaller one comes with the headers around it in the
// tar reader's buffer.
const sendMin = 16 << 10

// sendBody copies the body b of a plain tar's regular file from the archive to fd in the kernel
// (sendfile), without reading it into memory first; where sendfile refuses the pair of files before
// copying anything, it reads and writes.
func (s *stager) sendBody(fd int, b *fileBody) error {
	off, left := b.Off, b.Size
	for left > 0 {
		n, err := unix.Sendfile(fd, int(b.File.Fd()), &off, int(min(left, 1<<30)))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS)) && left == b.Size:
			return s.writeBody(fd, b.Reader, b.Size)
		case err != nil:
			return err
		case n == 0:
			return io.ErrUnexpectedEOF
		}
		left -= int64(n)
	}
	return nil
}

// writeBody writes the next size bytes of the stream to the file fd, straight from its pieces. The tar
// reader skips them afterwards.
func (p *streamReader) writeBody(fd int, size int64) error {
	if p.ahead > 0 {
		return errors.New("body taken before the tar reader skipped the previous one")
	}
	for left := size; left > 0; {
		if !p.fill() {
			return unexpectedEnd(p.err)
		}
		b := p.piece[:min(left, int64(len(p.piece)))]
		if err := writeAll(fd, b); err != nil {
			return err
		}
		p.piece = p.piece[len(b):]
		left -= int64(len(b))
	}
	p.ahead = size
	return nil
}

// writeAll writes b to fd, all of it.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// writeBody writes the size bytes of a regular file's body from r to fd, in chunks of the stager's
// buffer, with plain write calls.
func (s *stager) writeBody(fd int, r io.Reader, size int64) error {
	for size > 0 {
		b := s.buf
		if int64(len(b)) > size {
			b = b[:size]
		}
		n, err := io.ReadFull(r, b)
		if err != nil {
			return err
		}
		size -= int64(n)
		if err := writeAll(fd, b); err != nil {
			return err
		}
	}
	return nil
}

// remove removes the staged path name, base in the directory pfd, with everything under it, and its
// wanted state.
func (s *stager) remove(pfd int, base, name string) error {
	var st unix.Stat_t
	if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		var err error
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			s.dropDirs(name)
			err = os.RemoveAll(filepath.Join(s.dir, filepath.FromSlash(name)))
		} else {
			err = unix.Unlinkat(pfd, base, 0)
		}
		if err != nil {
			return err
		}
	}
	s.forget(name)
	return nil
}

// whiteout removes what the whiteout entry h of the layer being staged hides in the layers below: the
// name it whites out, or, for an opaque directory marker, everything under its directory that a lower
// layer staged. What the entry's own layer staged stays, wherever the entry comes in the layer.
func (s *stager) whiteout(h *tar.Header) error {
	name, err := CleanName(h.Name)
	if err != nil {
		return err
	}
	dir, base := split(name)
	what := strings.TrimPrefix(base, whiteoutPrefix)
	if what == "" || what == "." || what == ".." {
		return fmt.Errorf("entry %q: a whiteout of no name beside it: %w", h.Name, ErrUnsafePath)
	}
	if d, ok := s.nodes[dir]; dir != "" && (!ok || d.typ != tar.TypeDir) {
		return nil // nothing staged there to hide
	}
	if base == opaqueMarker {
		return s.hideLower(dir)
	}
	hidden := path.Join(dir, what)
	if n, ok := s.nodes[hidden]; !ok || n.layer == s.layer {
		return nil
	}
	return s.removeName(hidden)
}

// hideLower removes what lower layers staged under the directory dir, keeping what this layer did.
func (s *stager) hideLower(dir string) error {
	for k := range s.kids[dir] {
		n := s.nodes[k]
		switch {
		case n == nil:
		case n.layer < s.layer:
			if err := s.removeName(k); err != nil {
				return err
			}
		case n.typ == tar.TypeDir:
			if err := s.hideLower(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeName is remove of a staged path by its name alone.
func (s *stager) removeName(name string) error {
	pfd, base, err := s.parent(name, time.Time{})
	if err != nil {
		return err
	}
	if err := s.remove(pfd, base, name); err != nil {
		return fmt.Errorf("remove %q: %w", name, err)
	}
	return nil
}

// finish sets the staged modes and times and computes the counts and the fixups.
func (s *stager) finish() (*Staged, error) {
	if _, ok := s.nodes[""]; !ok {
		s.set("", &node{typ: tar.TypeDir, perm: 0o755, mtime: s.newest})
	}
	paths := make([]string, 0, len(s.nodes))
	for p := range s.nodes {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	out := &Staged{Dir: s.dir, Entries: len(paths)}
	var mknods, links, attrs, mtimes []Fixup
	linkCount := map[string]int{}
	dirBytes := map[string]int64{}
	touched := map[string]bool{}
	for _, p := range paths {
		n := s.nodes[p]
		abs := "/" + p
		if p != "" {
			dirBytes[path.Dir("/"+p)] += direntSize(path.Base(p))
		}
		if n.typ == tar.TypeLink {
			t := s.nodes[n.link]
			switch {
			case t != nil && !t.staged() && !n.linkMeta.staged():
				if linkCount[n.link] == 0 {
					linkCount[n.link] = 1
				}
				linkCount[n.link]++
				links = append(links, Fixup{Op: OpLink, Path: abs, Target: "/" + n.link, Links: linkCount[n.link]})
				touched[path.Dir(abs)] = true
				continue
			case t != nil && t.staged() && n.linkMeta.staged():
				same, err := s.sameInode(p, n.link)
				if err != nil {
					return nil, err
				}
				if same {
					continue
				}
			}
			// The first name was replaced after the link was made: the link keeps its own inode.
			n = n.linkMeta
		}
		switch n.typ {
		case tar.TypeChar, tar.TypeBlock:
			mode := uint32(unix.S_IFCHR)
			if n.typ == tar.TypeBlock {
				mode = unix.S_IFBLK
			}
			mknods = append(mknods, Fixup{Op: OpMknod, Path: abs, Mode: mode, Major: n.major, Minor: n.minor})
			attrs = append(attrs,
				Fixup{Op: OpOwner, Path: abs, UID: n.uid, GID: n.gid},
				Fixup{Op: OpMode, Path: abs, Mode: mode | n.perm})
			attrs = append(attrs, xattrFixups(abs, n)...)
			mtimes = append(mtimes, Fixup{Op: OpMtime, Path: abs, Time: n.mtime})
			touched[path.Dir(abs)] = true
			continue
		case tar.TypeDir:
			out.Dirs++
			dirBytes[abs] += 24
			if err := s.chmod(p, n.perm|0o700); err != nil {
				return nil, err
			}
		case tar.TypeReg:
			out.Files++
			out.Bytes += n.size
			out.usage = append(out.usage, n.size)
		case tar.TypeSymlink:
			var st unix.Stat_t
			if err := s.lstat(p, &st); err != nil {
				return nil, err
			}
			if st.Size > fastSymlinkMax {
				out.usage = append(out.usage, st.Size)
			}
		}
		if p == "" {
			attrs = append(attrs, rootFixups(n.uid, n.gid, n.perm, n.mtime)...)
			attrs = append(attrs, xattrFixups("/", n)...)
			continue
		}
		var st unix.Stat_t
		if n.settled {
			st.Uid, st.Gid, st.Mode = n.diskUID, n.diskGID, n.diskMode
		} else if err := s.lstat(p, &st); err != nil {
			return nil, err
		}
		if st.Uid != n.uid || st.Gid != n.gid {
			attrs = append(attrs, Fixup{Op: OpOwner, Path: abs, UID: n.uid, GID: n.gid})
		}
		if n.typ != tar.TypeSymlink && st.Mode&0o7777 != n.perm {
			attrs = append(attrs, Fixup{Op: OpMode, Path: abs, Mode: st.Mode&unix.S_IFMT | n.perm})
		}
		attrs = append(attrs, xattrFixups(abs, n)...)
		if n.settled {
			continue
		}
		if err := s.setTime(p, n.mtime); err != nil {
			return nil, err
		}
	}
	for d := range touched {
		if n, ok := s.nodes[strings.TrimPrefix(d, "/")]; ok {
			mtimes = append(mtimes, Fixup{Op: OpMtime, Path: d, Time: n.mtime})
		}
	}
	sort.SliceStable(mtimes, func(i, j int) bool { return mtimes[i].Path < mtimes[j].Path })
	for _, n := range dirBytes {
		out.usage = append(out.usage, n)
	}
	out.Fixups = append(append(append(mknods, links...), attrs...), mtimes...)
	return out, nil
}

func xattrFixups(abs string, n *node) []Fixup {
	names := make([]string, 0, len(n.xattrs))
	for k := range n.xattrs {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []Fixup
	for _, k := range names {
		out = append(out, Fixup{Op: OpXattr, Path: abs, Name: k, Value: n.xattrs[k]})
	}
	return out
}

// at opens the parent of a staged path (verified as when staging) and calls fn on it.
func (s *stager) at(p string, fn func(fd int, base string) error) error {
	if p == "" {
		return fn(s.root, ".")
	}
	s.trimDirs()
	pfd, base, err := s.parent(p, time.Time{})
	if err != nil {
		return err
	}
	if err := fn(pfd, base); err != nil {
		return fmt.Errorf("staged %q: %w", p, err)
	}
	return nil
}

func (s *stager) lstat(p string, st *unix.Stat_t) error {
	return s.at(p, func(fd int, base string) error {
		return unix.Fstatat(fd, base, st, unix.AT_SYMLINK_NOFOLLOW)
	})
}

func (s *stager) chmod(p string, perm uint32) error {
	return s.at(p, func(fd int, base string) error {
		return unix.Fchmodat(fd, base, perm, 0)
	})
}

func (s *stager) setTime(p string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return s.at(p, func(fd int, base string) error {
		return unix.UtimesNanoAt(fd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	})
}

func (s *stager) sameInode(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := s.lstat(a, &sa); err != nil {
		return false, err
	}
	if err := s.lstat(b, &sb); err != nil {
		return false, err
	}
	return sa.Ino == sb.Ino, nil
}
