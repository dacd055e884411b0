package ext4

import (
	"fmt"
	"io/fs"
	"maps"
	"path"
	"strings"
	"sync"

	dext4 "github.com/diskfs/go-diskfs/filesystem/ext4"
)

// Cached reads the filesystem as FS does, keeping in memory the directories it has listed, for a reader
// that looks up many paths through the same directories (the layers of a hostapp, rootfs/hostappfs).
// go-diskfs walks every directory of a path from the root on each call, so FS resolving a path of n
// components reads n(n+1)/2 directories, and each call starts over; Cached resolves paths through the
// directories it has read (each is read once, with the inodes of its entries) and calls go-diskfs once
// per call with the resolved path: for the entry's exact description (permission bits, which a listing
// does not give), or to read a file. The memory held is the entries of the directories looked through,
// for the lifetime of the value. Symlinks are told by the type their directory entry records (e2fsck
// keeps it equal to the inode's).
type Cached struct {
	f    *FS
	mu   sync.Mutex
	dirs map[string]*cachedDir // by resolved absolute path
	// parents memoizes the resolution of the parent directories Lstat, LstatType and Xattrs were given.
	parents map[string]string
}

type cachedDir struct {
	names  []string // in the directory's order, without "." and ".."
	byName map[string]*cachedEntry
	err    error // the directory could not be listed
}

type cachedEntry struct {
	listed fs.FileInfo // from the listing: type bits and Sys (device numbers, link target)
	exact  fs.FileInfo // Stat's, once asked
	xattrs map[string][]byte
	hasX   bool // xattrs read (directories only)
}

// Cached gives a view of f that keeps the directories it lists; see Cached.
func (f *FS) Cached() *Cached {
	return &Cached{f: f, dirs: map[string]*cachedDir{}, parents: map[string]string{}}
}

// list returns the entries of the resolved directory dir, reading it the first time.
func (c *Cached) list(dir string) (*cachedDir, error) {
	c.mu.Lock()
	d, ok := c.dirs[dir]
	c.mu.Unlock()
	if !ok {
		d = c.read(dir)
		c.mu.Lock()
		c.dirs[dir] = d
		c.mu.Unlock()
	}
	return d, d.err
}

// read lists the resolved directory dir.
func (c *Cached) read(dir string) *cachedDir {
	rel := strings.TrimPrefix(dir, "/")
	if rel == "" {
		rel = "."
	}
	entries, err := c.f.fsys.ReadDir(rel)
	if err != nil {
		return &cachedDir{err: err}
	}
	d := &cachedDir{byName: make(map[string]*cachedEntry, len(entries))}
	for _, e := range entries {
		n := e.Name()
		if n == "." || n == ".." {
			continue
		}
		if _, dup := d.byName[n]; dup { // a damaged directory: go-diskfs finds the first
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return &cachedDir{err: err}
		}
		d.names = append(d.names, n)
		d.byName[n] = &cachedEntry{listed: fi}
	}
	return d
}

// entry finds name in the resolved directory dir; nil when there is no such entry. When dir cannot be
// listed (a file, or an entry whose inode go-diskfs cannot read), the entry is looked up alone, as FS
// does, and not kept.
func (c *Cached) entry(dir, name string) *cachedEntry {
	d, err := c.list(dir)
	if err == nil {
		return d.byName[name]
	}
	fi, err := c.f.fsys.Stat(path.Join(dir, name))
	if err != nil {
		return nil
	}
	return &cachedEntry{listed: fi, exact: fi}
}

// resolve walks name component by component through the directories read, replacing symlinks by their
// targets, as resolve does.
func (c *Cached) resolve(name string) (string, error) {
	parts := splitClean(name)
	cur := "/"
	for hops := 0; len(parts) > 0; {
		e := c.entry(cur, parts[0])
		next := cur + "/" + parts[0] // the parts are clean components
		if cur == "/" {
			next = "/" + parts[0]
		}
		parts = parts[1:]
		if e == nil {
			return "", fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		if e.listed.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		var target string
		if st, ok := e.listed.Sys().(*dext4.StatT); ok {
			target = st.LinkTarget
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", name)
		}
		if !path.IsAbs(target) {
			target = path.Join(cur, target)
		}
		parts = append(splitClean(target), parts...)
		cur = "/"
	}
	return cur, nil
}

// splitClean cleans p to its components below the root ("/" has none).
func splitClean(p string) []string {
	c := path.Clean("/" + p)
	if c == "/" {
		return nil
	}
	return strings.Split(c[1:], "/")
}

// parentEntry resolves the parent of name and finds name's entry in it; p is the resolved path.
func (c *Cached) parentEntry(name string) (p string, e *cachedEntry, err error) {
	clean := path.Clean("/" + name)
	dir := path.Dir(clean)
	c.mu.Lock()
	parent, ok := c.parents[dir]
	c.mu.Unlock()
	if !ok {
		if parent, err = c.resolve(dir); err != nil {
			return "", nil, err
		}
		c.mu.Lock()
		c.parents[dir] = parent
		c.mu.Unlock()
	}
	p = path.Join(parent, path.Base(clean))
	if e = c.entry(parent, path.Base(clean)); e == nil {
		return "", nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return p, e, nil
}

// ReadFile reads the file name, resolving symlinks inside the filesystem, as FS.ReadFile.
func (c *Cached) ReadFile(name string) ([]byte, error) {
	p, err := c.resolve(name)
	if err != nil {
		return nil, err
	}
	return readFile(c.f, p, name)
}

// ReadDir lists the names in directory name, without "." and "..", as FS.ReadDir.
func (c *Cached) ReadDir(name string) ([]string, error) {
	p, err := c.resolve(name)
	if err != nil {
		return nil, err
	}
	d, err := c.list(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(d.names) == 0 {
		return nil, nil
	}
	return append([]string(nil), d.names...), nil
}

// Lstat describes the entry name without following a final symlink, as FS.Lstat.
func (c *Cached) Lstat(name string) (fs.FileInfo, error) {
	if path.Clean("/"+name) == "/" {
		return c.f.Lstat(name)
	}
	p, e, err := c.parentEntry(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	fi := e.exact
	c.mu.Unlock()
	if fi != nil {
		return fi, nil
	}
	if fi, err = c.f.fsys.Stat(p); err != nil {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	c.mu.Lock()
	e.exact = fi
	c.mu.Unlock()
	return fi, nil
}

// LstatType describes the entry name without following a final symlink as its directory's listing does:
// Mode has the type bits but no permission bits (Lstat has both); Size, ModTime and Sys (device numbers,
// link target) are Lstat's. Once the directory is kept it reads nothing.
func (c *Cached) LstatType(name string) (fs.FileInfo, error) {
	if path.Clean("/"+name) == "/" {
		return c.Lstat(name)
	}
	_, e, err := c.parentEntry(name)
	if err != nil {
		return nil, err
	}
	return e.listed, nil
}

// ReadLink reads the target of the symlink name, as FS.ReadLink.
func (c *Cached) ReadLink(name string) (string, error) {
	clean := path.Clean("/" + name)
	parent, err := c.resolve(path.Dir(clean))
	if err != nil {
		return "", err
	}
	t, err := c.f.fsys.ReadLink(strings.TrimPrefix(path.Join(parent, path.Base(clean)), "/"))
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return t, nil
}

// Xattrs reads the extended attributes of the entry name, without following a final symlink, as
// FS.Xattrs; a directory's are kept.
func (c *Cached) Xattrs(name string) (map[string][]byte, error) {
	if path.Clean("/"+name) == "/" {
		return c.f.Xattrs(name)
	}
	p, e, err := c.parentEntry(name)
	if err != nil {
		return nil, err
	}
	dir := e.listed.IsDir()
	if dir {
		c.mu.Lock()
		x, ok := e.xattrs, e.hasX
		c.mu.Unlock()
		if ok {
			return maps.Clone(x), nil
		}
	}
	x, err := c.f.fsys.GetXattr(p)
	if err != nil {
		return nil, fmt.Errorf("%s: extended attributes: %w", name, err)
	}
	if dir {
		c.mu.Lock()
		e.xattrs, e.hasX = maps.Clone(x), true
		c.mu.Unlock()
	}
	return x, nil
}
