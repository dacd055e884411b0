package enginestore

import (
	"archive/tar"
	"strings"
	"time"

	"github.com/hostos/hostos/rootfs/tree"
)

// The overlay whiteout conventions of layer tars and of overlayfs.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// errUnsafePath is returned for a layer entry that would land outside the layer directory: the staging
// tree's own sentinel, since layer names are cleaned by tree.CleanName.
var errUnsafePath = tree.ErrUnsafePath

// entry is the wanted state of one path of a layer directory.
type entry struct {
	typ          byte // tar type flag; TypeLink for a second name of an inode
	perm         uint32
	uid, gid     uint32
	mtime        time.Time
	major, minor uint32
	xattrs       map[string][]byte
	// size is what the engine counts for the layer: file bytes, or the symlink target's length.
	size int64
	// link is the first name of the inode of a TypeLink entry.
	link string
}

func (e *entry) staged() bool { return e.typ != tar.TypeChar && e.typ != tar.TypeBlock }

func (e *entry) setXattr(name string, value []byte) {
	if e.xattrs == nil {
		e.xattrs = map[string][]byte{}
	}
	e.xattrs[name] = value
}

func metaOf(h *tar.Header) *entry {
	e := &entry{
		typ:   h.Typeflag,
		perm:  uint32(h.Mode) & 0o7777,
		uid:   uint32(h.Uid),
		gid:   uint32(h.Gid),
		mtime: h.ModTime,
		major: uint32(h.Devmajor),
		minor: uint32(h.Devminor),
	}
	if e.typ == tar.TypeRegA {
		e.typ = tar.TypeReg
	}
	switch e.typ {
	case tar.TypeReg:
		e.size = h.Size
	case tar.TypeSymlink:
		e.size = int64(len(h.Linkname))
	}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			e.setXattr(name, []byte(v))
		}
	}
	return e
}
