package ext4

import (
	"fmt"
	"io/fs"
	"path"
)

// Xattrs reads the extended attributes of the entry name ("trusted.overlay.opaque" → "y"), without
// following a final symlink; a missing entry gives an error wrapping fs.ErrNotExist.
func (f *FS) Xattrs(name string) (map[string][]byte, error) {
	p := path.Clean("/" + name)
	if p != "/" {
		parent, err := resolve(f.fsys, path.Dir(p))
		if err != nil {
			return nil, err
		}
		p = path.Join(parent, path.Base(p))
	}
	if _, err := f.fsys.Stat(p); err != nil {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	x, err := f.fsys.GetXattr(p)
	if err != nil {
		return nil, fmt.Errorf("%s: extended attributes: %w", name, err)
	}
	return x, nil
}
