package hostappfs

import (
	"bytes"
	"io"
	"io/fs"
	"path"
	"strings"
	"testing"
	"time"

	dext4 "github.com/diskfs/go-diskfs/filesystem/ext4"
)

// memFS is a slot held in memory, for fuzzing the reader with hostile layouts.
type memFS map[string]memEntry

type memEntry struct {
	mode   fs.FileMode
	data   string // a file's content or a symlink's target
	opaque bool
}

type memInfo struct {
	name string
	e    memEntry
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return int64(len(i.e.data)) }
func (i memInfo) Mode() fs.FileMode  { return i.e.mode }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.e.mode.IsDir() }
func (i memInfo) Sys() any           { return &dext4.StatT{} }

// resolve follows symlinks through the path as ext4.FS does.
func (m memFS) resolve(name string, final bool) (string, error) {
	parts := splitPath(name)
	cur := "/"
	for hops := 0; len(parts) > 0; {
		next := path.Join(cur, parts[0])
		parts = parts[1:]
		e, ok := m[next]
		if !ok {
			return "", fs.ErrNotExist
		}
		if e.mode&fs.ModeSymlink == 0 || (!final && len(parts) == 0) {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fs.ErrInvalid
		}
		t := e.data
		if !path.IsAbs(t) {
			t = path.Join(cur, t)
		}
		parts = append(splitPath(t), parts...)
		cur = "/"
	}
	return cur, nil
}

func (m memFS) ReadFile(name string) ([]byte, error) {
	p, err := m.resolve(name, true)
	if err != nil {
		return nil, err
	}
	if e := m[p]; !e.mode.IsRegular() {
		return nil, fs.ErrNotExist
	}
	return []byte(m[p].data), nil
}

func (m memFS) Open(name string) (io.ReadCloser, error) {
	b, err := m.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m memFS) Lstat(name string) (fs.FileInfo, error) {
	p, err := m.resolve(name, false)
	if err != nil {
		return nil, err
	}
	if p == "/" {
		return memInfo{"/", memEntry{mode: fs.ModeDir | 0o755}}, nil
	}
	return memInfo{path.Base(p), m[p]}, nil
}

func (m memFS) ReadLink(name string) (string, error) {
	p, err := m.resolve(name, false)
	if err != nil {
		return "", err
	}
	if m[p].mode&fs.ModeSymlink == 0 {
		return "", fs.ErrInvalid
	}
	return m[p].data, nil
}

func (m memFS) ReadDir(name string) ([]string, error) {
	p, err := m.resolve(name, true)
	if err != nil {
		return nil, err
	}
	var out []string
	for k := range m {
		if k != p && path.Dir(k) == p {
			out = append(out, path.Base(k))
		}
	}
	return out, nil
}

func (m memFS) Xattrs(name string) (map[string][]byte, error) {
	p, err := m.resolve(name, false)
	if err != nil {
		return nil, err
	}
	if m[p].opaque {
		return map[string][]byte{"trusted.overlay.opaque": []byte("y")}, nil
	}
	return map[string][]byte{}, nil
}

// typedMemFS is memFS telling entry types apart from Lstat, as ext4.Cached does: without permission bits.
type typedMemFS struct{ memFS }

func (m typedMemFS) LstatType(name string) (fs.FileInfo, error) {
	fi, err := m.Lstat(name)
	if err != nil {
		return nil, err
	}
	i := fi.(memInfo)
	i.e.mode = i.e.mode.Type()
	return i, nil
}

func (m memFS) add(p string, e memEntry) {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if _, ok := m[d]; !ok {
			m[d] = memEntry{mode: fs.ModeDir | 0o755}
		}
	}
	m[p] = e
}

// FuzzRead gives the reader hostile links, configs, mount ids, lower chains and symlinks inside the OS:
// it returns errors, never panics or loops.
func FuzzRead(f *testing.F) {
	id := strings.Repeat("a", 64)
	f.Add("hostapps/"+id, `{"ID":"`+id+`","Driver":"overlay2"}`, "m1", "l/L1", "../c1/diff", "../usr/lib/os-release", "/etc/os-release")
	f.Add("../../x", `{"ID":"`+id+`","Driver":"overlay2"}`, "../../etc", "l/L1:l/../x", "/abs", "os-release", "/")
	f.Add("hostapps/"+id, `{"ID":"`+id+`","Driver":"overlay2"}`, "m1", "l/L1", "../c1-init/diff", "/etc/os-release", "/etc/os-release/..")
	f.Fuzz(func(t *testing.T, current, config, mountID, lower, link, osLink, name string) {
		m := memFS{}
		m.add("/current", memEntry{mode: fs.ModeSymlink, data: current})
		m.add("/balena/containers/"+id+"/config.v2.json", memEntry{data: config})
		m.add("/balena/image/overlay2/layerdb/mounts/"+id+"/mount-id", memEntry{data: mountID})
		if safeName(mountID) {
			m.add("/balena/overlay2/"+mountID+"/lower", memEntry{data: lower})
			m.add("/balena/overlay2/"+mountID+"/diff/etc/os-release", memEntry{mode: fs.ModeSymlink, data: osLink})
		}
		m.add("/balena/overlay2/l/L1", memEntry{mode: fs.ModeSymlink, data: link})
		m.add("/balena/overlay2/c1/diff/usr/lib/os-release", memEntry{data: "VERSION_ID=1\n"})
		m.add("/balena/overlay2/c1/diff/etc", memEntry{mode: fs.ModeDir | 0o755, opaque: true})
		o, err := Open(m)
		if err != nil {
			return
		}
		o.ReadFile(name)
		if r, err := o.Open(name); err == nil {
			r.Close()
		}
		o.ReadDir(name)
		o.Lstat(name)
		o.ReadFile("/etc/os-release")
		// Reading entry types apart (as through ext4.Cached) answers the same.
		typed, err := Open(typedMemFS{m})
		if err != nil {
			t.Fatalf("typed: %v, untyped opened", err)
		}
		for _, n := range []string{name, "/etc/os-release", "/etc", "/"} {
			b1, err1 := o.ReadFile(n)
			b2, err2 := typed.ReadFile(n)
			d1, derr1 := o.ReadDir(n)
			d2, derr2 := typed.ReadDir(n)
			f1, ferr1 := o.Lstat(n)
			f2, ferr2 := typed.Lstat(n)
			if string(b1) != string(b2) || (err1 == nil) != (err2 == nil) || strings.Join(d1, "/") != strings.Join(d2, "/") ||
				(derr1 == nil) != (derr2 == nil) || (ferr1 == nil) != (ferr2 == nil) || (ferr1 == nil && f1.Mode() != f2.Mode()) {
				t.Fatalf("%q: typed and untyped differ: %q %v / %q %v; %q %v / %q %v; %v %v / %v %v", n, b1, err1, b2, err2, d1, derr1, d2, derr2, f1, ferr1, f2, ferr2)
			}
		}
	})
}
