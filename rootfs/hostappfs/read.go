package hostappfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	dext4 "github.com/diskfs/go-diskfs/filesystem/ext4"

	"github.com/hostos/hostos/rootfs/ext4"
)

// DataRoot is the engine's data root inside a hostapp slot (mobynit's HOSTAPP_LAYER_ROOT).
const DataRoot = "balena"

// Current is the link at a hostapp slot's root naming the OS's container.
const Current = "current"

// Layout is how a root slot holds its OS.
type Layout string

const (
	// Flat slots hold the OS's files at their root.
	Flat Layout = "flat"
	// Hostapp slots hold the OS as a container in an engine store, named by Current.
	Hostapp Layout = "hostapp"
)

// FS is the read side of a slot's filesystem; *ext4.FS and *ext4.Cached are.
type FS interface {
	// ReadFile reads a file, resolving symlinks inside the filesystem.
	ReadFile(name string) ([]byte, error)
	// Open opens a regular file for reading, resolving symlinks inside the filesystem, for files of any
	// size.
	Open(name string) (io.ReadCloser, error)
	// Lstat describes an entry without following a final symlink; Sys gives the device numbers of a
	// device node as go-diskfs's *ext4.StatT.
	Lstat(name string) (fs.FileInfo, error)
	ReadLink(name string) (string, error)
	ReadDir(name string) ([]string, error)
	// Xattrs reads the extended attributes of an entry, not following a final symlink.
	Xattrs(name string) (map[string][]byte, error)
}

// typeStater is an FS that tells the type of an entry (and a device's numbers) more cheaply than Lstat,
// without its permission bits; *ext4.Cached is one. The overlay rules need only the type.
type typeStater interface {
	LstatType(name string) (fs.FileInfo, error)
}

// OS is the operating system a root slot holds.
type OS struct {
	fsys   FS
	layout Layout
	// container and image are the hostapp's container id and image id ("sha256:...").
	container, image string
	// layers are the directories of the container's root, top first, absolute in fsys.
	layers []string
}

// ReadFile opens the ext4 filesystem at [off, off+size) of r, a root slot, and reads name from the OS
// it holds, in either layout.
func ReadFile(r io.ReaderAt, off, size int64, name string) ([]byte, error) {
	o, err := OpenSlot(r, off, size)
	if err != nil {
		return nil, err
	}
	return o.ReadFile(name)
}

// OpenSlot opens the ext4 filesystem at [off, off+size) of r, a root slot, and finds the OS it holds.
func OpenSlot(r io.ReaderAt, off, size int64) (*OS, error) {
	fsys, err := ext4.Open(r, off, size)
	if err != nil {
		return nil, err
	}
	// The OS's paths go through the same layer directories again and again: keep those read.
	return Open(fsys.Cached())
}

// Open finds the OS in a root slot's filesystem: the slot's own files, or for a hostapp slot the root of
// the container that current names, as mobynit would mount it.
func Open(fsys FS) (*OS, error) {
	o := &OS{fsys: fsys, layout: Flat}
	cur, err := fsys.Lstat("/" + Current)
	if err != nil || cur.Mode()&fs.ModeSymlink == 0 {
		return o, nil
	}
	if d, err := fsys.Lstat("/" + DataRoot); err != nil || !d.IsDir() {
		return o, nil
	}
	o.layout = Hostapp
	target, err := fsys.ReadLink("/" + Current)
	if err != nil {
		return nil, fmt.Errorf("hostapp slot: %w", err)
	}
	id := path.Base(target)
	if !safeName(id) {
		return nil, fmt.Errorf("hostapp slot: %s -> %q names no container", Current, target)
	}
	c, err := findContainer(fsys, id)
	if err != nil {
		return nil, fmt.Errorf("hostapp slot: %w", err)
	}
	o.container, o.image = c.ID, c.Image
	if o.layers, err = containerLayers(fsys, c.ID); err != nil {
		return nil, fmt.Errorf("hostapp slot: container %s: %w", short(c.ID), err)
	}
	return o, nil
}

// Layout tells how the slot holds the OS.
func (o *OS) Layout() Layout { return o.layout }

// Slot is the slot's own filesystem, where a hostapp slot keeps its links and counter.
func (o *OS) Slot() FS { return o.fsys }

// Container is the id of the hostapp's container; "" for a flat slot.
func (o *OS) Container() string { return o.container }

// Image is the id of the hostapp's image ("sha256:..."); "" for a flat slot.
func (o *OS) Image() string { return o.image }

// ReadFile reads the file name of the OS, resolving symlinks inside the OS's root.
func (o *OS) ReadFile(name string) ([]byte, error) {
	if o.layout == Flat {
		return o.fsys.ReadFile(name)
	}
	layer, p, err := o.resolve(name)
	if err != nil {
		return nil, err
	}
	if p == "/" {
		return nil, fmt.Errorf("%s in container %s: a directory", name, short(o.container))
	}
	b, err := o.fsys.ReadFile(layer + p)
	if err != nil {
		return nil, fmt.Errorf("%s in container %s: %w", name, short(o.container), err)
	}
	return b, nil
}

// Open opens the regular file name of the OS for reading, resolving symlinks inside the OS's root; unlike
// ReadFile it reads files of any size.
func (o *OS) Open(name string) (io.ReadCloser, error) {
	if o.layout == Flat {
		return o.fsys.Open(name)
	}
	layer, p, err := o.resolve(name)
	if err != nil {
		return nil, err
	}
	if p == "/" {
		return nil, fmt.Errorf("%s in container %s: a directory", name, short(o.container))
	}
	r, err := o.fsys.Open(layer + p)
	if err != nil {
		return nil, fmt.Errorf("%s in container %s: %w", name, short(o.container), err)
	}
	return r, nil
}

// Lstat describes the entry name of the OS without following a final symlink (its parents' are
// followed, inside the OS's root).
func (o *OS) Lstat(name string) (fs.FileInfo, error) {
	if o.layout == Flat {
		return o.fsys.Lstat(name)
	}
	parts := splitPath(name)
	if len(parts) == 0 {
		return o.fsys.Lstat(o.layers[0])
	}
	_, dir, err := o.resolve(path.Dir("/" + strings.Join(parts, "/")))
	if err != nil {
		return nil, err
	}
	p := path.Join(dir, parts[len(parts)-1])
	layer, fi, err := o.lookup(p)
	if err == nil && o.typed() {
		fi, err = o.fsys.Lstat(layer + p) // the entry's permission bits too
	}
	if err != nil {
		return nil, fmt.Errorf("%s in container %s: %w", name, short(o.container), err)
	}
	return fi, nil
}

// typed tells whether lstatType describes entries without their permission bits.
func (o *OS) typed() bool {
	_, ok := o.fsys.(typeStater)
	return ok
}

// lstatType describes the entry name of the slot enough for the overlay rules: its type and Sys.
func (o *OS) lstatType(name string) (fs.FileInfo, error) {
	if t, ok := o.fsys.(typeStater); ok {
		return t.LstatType(name)
	}
	return o.fsys.Lstat(name)
}

// ReadDir lists the names in the OS's directory name, sorted, as the merged view shows them: the
// directory's entries in each layer down to an opaque one, less those a whiteout hides.
func (o *OS) ReadDir(name string) ([]string, error) {
	if o.layout == Flat {
		return o.fsys.ReadDir(name)
	}
	_, p, err := o.resolve(name)
	if err != nil {
		return nil, err
	}
	layers := o.layers
	if p != "/" {
		var fi fs.FileInfo
		if layers, fi, err = o.stack(p); err != nil {
			return nil, fmt.Errorf("%s in container %s: %w", name, short(o.container), err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s in container %s: not a directory", name, short(o.container))
		}
	}
	seen := map[string]bool{}
	var names []string
	for _, layer := range layers {
		dir := strings.TrimSuffix(layer+p, "/")
		entries, err := o.fsys.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("%s in container %s: %w", name, short(o.container), err)
		}
		for _, n := range entries {
			if seen[n] {
				continue
			}
			seen[n] = true
			fi, err := o.lstatType(dir + "/" + n)
			if err != nil {
				return nil, fmt.Errorf("%s in container %s: %w", name, short(o.container), err)
			}
			if !whiteout(fi) {
				names = append(names, n)
			}
		}
		if p == "/" { // every layer's root shows, down to an opaque one
			fi, err := o.fsys.Lstat(layer)
			if err != nil {
				return nil, err
			}
			if opaque, err := o.isOpaque(layer, fi); err != nil || opaque {
				if err != nil {
					return nil, err
				}
				break
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// container is what mobynit reads of a container's config.v2.json.
type container struct {
	ID     string `json:"ID"`
	Image  string `json:"Image"`
	Driver string `json:"Driver"`
	State  struct {
		Dead              bool `json:"Dead"`
		RemovalInProgress bool `json:"RemovalInProgress"`
	} `json:"State"`
}

const containersDir = "/" + DataRoot + "/containers"

// findContainer reads the container whose ID is id or starts with it, as mobynit matches it.
func findContainer(fsys FS, id string) (*container, error) {
	dirs := []string{id}
	if _, err := fsys.Lstat(containersDir + "/" + id + "/config.v2.json"); err != nil {
		names, err := fsys.ReadDir(containersDir)
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", short(id), err)
		}
		dirs = nil
		for _, n := range names {
			if strings.HasPrefix(n, id) {
				dirs = append(dirs, n)
			}
		}
	}
	var found []*container
	for _, d := range dirs {
		b, err := fsys.ReadFile(containersDir + "/" + d + "/config.v2.json")
		if err != nil {
			continue
		}
		c := &container{}
		if err := json.Unmarshal(b, c); err != nil {
			return nil, fmt.Errorf("container %s: config.v2.json: %w", short(d), err)
		}
		if !strings.HasPrefix(c.ID, id) || c.State.Dead || c.State.RemovalInProgress {
			continue
		}
		found = append(found, c)
	}
	switch {
	case len(found) == 0:
		return nil, fmt.Errorf("container %s, named by %s: %w", short(id), Current, fs.ErrNotExist)
	case len(found) > 1:
		return nil, fmt.Errorf("container %s, named by %s: %d containers match", short(id), Current, len(found))
	case found[0].Driver != "overlay2":
		return nil, fmt.Errorf("container %s: storage driver %q, not overlay2", short(found[0].ID), found[0].Driver)
	case !safeName(found[0].ID):
		return nil, fmt.Errorf("container id %q: not a name", found[0].ID)
	}
	return found[0], nil
}

const overlayDir = "/" + DataRoot + "/overlay2"

// containerLayers lists the directories mobynit gives overlayfs as lowerdir, top first.
func containerLayers(fsys FS, id string) ([]string, error) {
	b, err := fsys.ReadFile("/" + DataRoot + "/image/overlay2/layerdb/mounts/" + id + "/mount-id")
	if err != nil {
		return nil, fmt.Errorf("mount-id: %w", err)
	}
	mountID := strings.TrimSpace(string(b))
	if !safeName(mountID) {
		return nil, fmt.Errorf("mount-id %q: not a name", mountID)
	}
	layers := []string{overlayDir + "/" + mountID + "/diff"}
	b, err = fsys.ReadFile(overlayDir + "/" + mountID + "/lower")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("lower: %w", err)
	}
	lower := strings.TrimSpace(string(b))
	if lower == "" {
		return layers, nil
	}
	if n := strings.Count(lower, ":") + 1; n > maxLayers {
		return nil, fmt.Errorf("lower: %d layers, more than the engine stacks (%d)", n, maxLayers)
	}
	for _, l := range strings.Split(lower, ":") {
		link, ok := strings.CutPrefix(l, "l/")
		if !ok || !safeName(link) {
			return nil, fmt.Errorf("lower entry %q: not a layer link", l)
		}
		target, err := fsys.ReadLink(overlayDir + "/l/" + link)
		if err != nil {
			return nil, fmt.Errorf("lower entry %q: %w", l, err)
		}
		dir := path.Join(overlayDir, "l", target)
		if !path.IsAbs(target) && strings.HasPrefix(dir, overlayDir+"/") && strings.Count(dir[len(overlayDir)+1:], "/") == 1 && path.Base(dir) == "diff" {
			if strings.HasSuffix(path.Dir(dir), "-init") {
				continue // mobynit skips init layers
			}
			layers = append(layers, dir)
			continue
		}
		return nil, fmt.Errorf("lower entry %q: link to %q, not a layer of the store", l, target)
	}
	return layers, nil
}

// maxLayers is the most entries of a container's lower: the engine's overlay2 driver stacks at most 128
// image layers (its maxDepth), and a container adds its init layer.
const maxLayers = 129

// maxHops bounds symlink resolution, as the kernel's 40.
const maxHops = 40

// resolve finds the layer holding name in the container's root, following symlinks in the merged view;
// it returns the layer directory and the path inside it, or "" and "/" for the root directory.
func (o *OS) resolve(name string) (layer, p string, err error) {
	parts := splitPath(name)
	cur := ""
	for hops := 0; len(parts) > 0; {
		next := cur + "/" + parts[0]
		parts = parts[1:]
		layer, fi, err := o.lookup(next)
		if err != nil {
			return "", "", fmt.Errorf("%s in container %s: %w", name, short(o.container), err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if len(parts) > 0 && !fi.IsDir() {
				return "", "", fmt.Errorf("%s in container %s: %s is not a directory: %w", name, short(o.container), next, fs.ErrNotExist)
			}
			if len(parts) == 0 {
				return layer, next, nil
			}
			cur = next
			continue
		}
		if hops++; hops > maxHops {
			return "", "", fmt.Errorf("%s in container %s: too many levels of symbolic links", name, short(o.container))
		}
		target, err := o.fsys.ReadLink(layer + next)
		if err != nil {
			return "", "", fmt.Errorf("%s in container %s: %w", name, short(o.container), err)
		}
		if path.IsAbs(target) {
			cur = ""
		}
		// Every component of cur is a directory, so ".." in the target resolves lexically.
		parts = append(splitPath(path.Join(cur, target)), parts...)
		cur = ""
	}
	return "", "/", nil // the root directory
}

// splitPath cleans name to components inside a root ("/../etc" is "/etc").
func splitPath(name string) []string {
	c := path.Clean("/" + name)
	if c == "/" {
		return nil
	}
	return strings.Split(c[1:], "/")
}

// lookup finds the topmost entry for p (whose parent is a directory in the merged view).
func (o *OS) lookup(p string) (string, fs.FileInfo, error) {
	layers, fi, err := o.stack(p)
	if err != nil {
		return "", nil, err
	}
	return layers[0], fi, nil
}

// stack lists the layers whose entry at p (whose parent is a directory in the merged view) shows in the
// merged view, top first, and describes the topmost: one layer for a non-directory, each layer's
// directory down to the first opaque one for a directory. It follows overlayfs's rules: a whiteout, an
// opaque directory or a non-directory hides what the layers below hold at its place and under it.
func (o *OS) stack(p string) ([]string, fs.FileInfo, error) {
	comps := splitPath(p)
	var (
		out []string
		top fs.FileInfo
	)
	for _, layer := range o.layers {
		hidesBelow := false // this layer ends the search: nothing below shows at p
		at := ""
		for i, c := range comps {
			at += "/" + c
			fi, err := o.lstatType(layer + at)
			if errors.Is(err, fs.ErrNotExist) {
				break // this layer holds nothing at p: look below, unless an opaque parent hides it
			}
			if err != nil {
				return nil, nil, err
			}
			if whiteout(fi) || (!fi.IsDir() && (i < len(comps)-1 || top != nil)) {
				hidesBelow = true // a whiteout, a file over the path, or a lower file under an upper directory
				break
			}
			opaque, err := o.isOpaque(layer+at, fi)
			if err != nil {
				return nil, nil, err
			}
			hidesBelow = hidesBelow || opaque
			if i == len(comps)-1 {
				out = append(out, layer)
				if top == nil {
					top = fi
				}
				if !fi.IsDir() {
					hidesBelow = true
				}
			}
		}
		if hidesBelow {
			break
		}
	}
	if top == nil {
		return nil, nil, fs.ErrNotExist
	}
	return out, top, nil
}

// isOpaque tells an opaque directory; anything else is not.
func (o *OS) isOpaque(name string, fi fs.FileInfo) (bool, error) {
	if !fi.IsDir() {
		return false, nil
	}
	return o.opaque(name)
}

// whiteout tells overlayfs's whiteout, a character device 0:0.
func whiteout(fi fs.FileInfo) bool {
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*dext4.StatT)
	return ok && st.Major == 0 && st.Minor == 0
}

// opaque tells a directory that hides what the layers below hold under it.
func (o *OS) opaque(dir string) (bool, error) {
	x, err := o.fsys.Xattrs(dir)
	if err != nil {
		return false, err
	}
	return string(x["trusted.overlay.opaque"]) == "y" || string(x["user.overlay.opaque"]) == "y", nil
}

// safeName is a single path component.
func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00\n")
}

// short abbreviates a 64-digit id as the engine shows it.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
