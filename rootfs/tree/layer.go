package tree

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// An image's layers are tar archives lying in files: the blobs of an OCI layout, or the uncompressed
// members of a docker save archive. Stage reads each layer's region of its file as it reads a tar
// archive, through the same fast paths (the kernel copying file bodies of a plain tar, igzip, a
// decompressor read ahead), instead of go-containerregistry's flattening, which decompresses in this
// process and writes the whole stream once more through a pipe. Each layer's bytes are hashed on the
// way, on a core of their own, and staging fails unless they have the digest the image names. An image
// with a layer elsewhere (a foreign layer, a compressed member of a docker save archive) is flattened.
//
// The layers are applied lowest first, each over what those below staged, as docker applies them: a
// name replaces the same name below (a directory over a directory takes the new owner, mode and time
// and keeps what is under it); a whiteout entry ".wh.NAME" removes NAME as staged by a lower layer, and
// an opaque marker ".wh..wh..opq" everything lower layers staged under its directory, wherever the entry
// comes in its layer. In the lowest layer whiteouts hide nothing and are left out. Within a layer the
// entries are staged as a tar archive's are: a name given twice takes the later entry, and a relative
// link climbing out of the root is kept (the stager follows no link, and on the device ".." of the root
// is the root). Where the flattening differs: it keeps a name's first entry in a layer, drops links
// climbing out, and points a hard link at the file that replaced its target in an upper layer, where
// docker and an overlay mount keep the old inode.

// imageLayer is the region of a file holding a layer of an image, and the digest of its bytes.
type imageLayer struct {
	path      string
	off, size int64
	digest    v1.Hash
}

// imageLayers finds the layers of img, an image opened from src, lowest first, when each lies whole in a
// file Stage can read; nil otherwise, and then the image is flattened.
func imageLayers(src string, kind Kind, img v1.Image) ([]*imageLayer, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", kind, src, err)
	}
	if len(layers) == 0 {
		return nil, nil
	}
	if kind == KindOCI {
		m, err := img.Manifest()
		if err != nil || len(m.Layers) != len(layers) {
			return nil, nil
		}
		var out []*imageLayer
		for _, d := range m.Layers {
			if newDigest(d.Digest) == nil || len(d.URLs) > 0 {
				return nil, nil
			}
			p := filepath.Join(src, "blobs", d.Digest.Algorithm, d.Digest.Hex)
			fi, err := os.Stat(p)
			if err != nil {
				return nil, fmt.Errorf("OCI layout %s: layer %s: %w", src, d.Digest, err)
			}
			if !fi.Mode().IsRegular() {
				// A fifo or a device would never end, or never start.
				return nil, fmt.Errorf("OCI layout %s: layer %s is no regular file (%s)", src, d.Digest, fi.Mode().Type())
			}
			if fi.Size() != d.Size {
				return nil, fmt.Errorf("OCI layout %s: layer %s holds %d bytes, its manifest says %d", src, d.Digest, fi.Size(), d.Size)
			}
			out = append(out, &imageLayer{path: p, size: d.Size, digest: d.Digest})
		}
		return out, nil
	}
	cfg, err := img.ConfigFile()
	if err != nil || len(cfg.RootFS.DiffIDs) != len(layers) {
		return nil, nil
	}
	regions, err := saveLayers(src)
	if err != nil || len(regions) != len(layers) {
		return nil, err
	}
	var out []*imageLayer
	for i, r := range regions {
		d := cfg.RootFS.DiffIDs[i]
		if newDigest(d) == nil {
			return nil, nil
		}
		out = append(out, &imageLayer{path: src, off: r.off, size: r.size, digest: d})
	}
	return out, nil
}

// compressedHead tells a stream that starts as a gzip, xz or zstd one does.
func compressedHead(head []byte) bool {
	return bytes.HasPrefix(head, magicGzip) || bytes.HasPrefix(head, magicXz) || bytes.HasPrefix(head, magicZstd)
}

// region is where a member's body lies in a tar archive.
type region struct{ off, size int64 }

// saveLayers reads the manifest of the docker save archive src and finds where the layer members it
// names lie, lowest first, in one walk of its headers; nil when its manifest is not of one image, or a
// layer is no plain, uncompressed, non-empty member (a link, which the flattening follows, or gzip).
func saveLayers(src string) ([]region, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("docker archive %s: %w", src, err)
	}
	defer f.Close()
	members := map[string]region{}
	var m tarball.Manifest
	r := &skipReader{f: f, buf: make([]byte, 16<<10)}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("docker archive %s: %w", src, err)
		}
		if (h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA) || sparse(h) {
			continue
		}
		name := path.Clean(h.Name)
		members[name] = region{r.pos, h.Size}
		if name == "manifest.json" && h.Size <= maxSaveManifest {
			if err := json.NewDecoder(tr).Decode(&m); err != nil {
				return nil, nil // go-containerregistry read it; a stranger one is flattened
			}
		}
	}
	if len(m) != 1 {
		return nil, nil
	}
	head := make([]byte, len(magicXz))
	var out []region
	for _, l := range m[0].Layers {
		reg, ok := members[path.Clean(l)]
		if !ok || reg.size == 0 {
			return nil, nil
		}
		n, _ := f.ReadAt(head[:min(int64(len(head)), reg.size)], reg.off)
		if compressedHead(head[:n]) {
			return nil, nil
		}
		out = append(out, reg)
	}
	return out, nil
}

// maxSaveManifest bounds the manifest.json of a docker save archive read for its layers' names.
const maxSaveManifest = 16 << 20

// newDigest is the hash of the algorithm of d, nil for one Stage cannot check.
func newDigest(d v1.Hash) hash.Hash {
	switch d.Algorithm {
	case "sha256":
		return sha256.New()
	case "sha512":
		return sha512.New()
	}
	return nil
}

// The names of whiteout entries, as the OCI image spec and docker write them.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// Whiteout tells an image layer's entry that hides a lower layer's: a whiteout file or an opaque
// directory marker.
func Whiteout(name string) bool {
	return strings.HasPrefix(path.Base(name), whiteoutPrefix)
}

// verify hashes the layer's bytes in a goroutine, from a file of its own. wait waits for it and tells
// whether they had the layer's digest; stop ends it early when staging failed.
func (l *imageLayer) verify() (wait func() error, stop func()) {
	var stopped atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			f, err := os.Open(l.path)
			if err != nil {
				return err
			}
			defer f.Close()
			h := newDigest(l.digest)
			buf := make([]byte, 1<<20)
			for off, end := l.off, l.off+l.size; off < end; {
				if stopped.Load() {
					return errors.New("stopped")
				}
				n, err := f.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
				h.Write(buf[:n])
				off += int64(n)
				if err != nil && (!errors.Is(err, io.EOF) || off < end) {
					return err
				}
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != l.digest.Hex {
				return fmt.Errorf("layer %s: its bytes hash to %s:%s", l.digest, l.digest.Algorithm, got)
			}
			return nil
		}()
	}()
	return func() error { return <-done }, func() { stopped.Store(true) }
}
