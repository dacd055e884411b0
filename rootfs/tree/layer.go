package tree

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
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

// A root filesystem exported as an image (docker export then import, a Yocto OCI image, buildah from
// scratch) has one layer. Its layer is a tar archive lying in a file: the blob of an OCI layout, or an
// uncompressed member of a docker save archive. Stage reads that region of the file as it reads a tar
// archive, through the same fast paths (the kernel copying file bodies of a plain tar, igzip, a
// decompressor read ahead), instead of go-containerregistry's flattening, which decompresses in this
// process and writes the whole stream once more through a pipe. The layer's bytes are hashed on the
// way, on a core of their own, and staging fails unless they have the digest the image names.
//
// In a single layer, whiteout entries hide nothing: Stage leaves them out, as the flattening does. The
// rest is staged as the tar archive's entries are: a name given twice takes the later entry, and a
// relative link climbing out of the root is kept (the stager follows no link, and on the device ".."
// of the root is the root).

// imageLayer is the region of a file holding the one layer of an image, and the digest of its bytes.
type imageLayer struct {
	path      string
	off, size int64
	digest    v1.Hash
}

// oneLayer finds the layer of img, an image opened from src, when it is its only one and lies whole in
// a file Stage can read; nil otherwise, and then the image is flattened.
func oneLayer(src string, kind Kind, img v1.Image) (*imageLayer, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", kind, src, err)
	}
	if len(layers) != 1 {
		return nil, nil
	}
	if kind == KindOCI {
		m, err := img.Manifest()
		if err != nil || len(m.Layers) != 1 {
			return nil, nil
		}
		d := m.Layers[0]
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
		return &imageLayer{path: p, size: d.Size, digest: d.Digest}, nil
	}
	cfg, err := img.ConfigFile()
	if err != nil || len(cfg.RootFS.DiffIDs) != 1 || newDigest(cfg.RootFS.DiffIDs[0]) == nil {
		return nil, nil
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(src) })
	if err != nil || len(m) != 1 || len(m[0].Layers) != 1 {
		return nil, nil
	}
	off, size, err := memberRegion(src, m[0].Layers[0])
	if err != nil || size <= 0 {
		return nil, err
	}
	l := &imageLayer{path: src, off: off, size: size, digest: cfg.RootFS.DiffIDs[0]}
	head := make([]byte, len(magicXz))
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("docker archive %s: %w", src, err)
	}
	defer f.Close()
	n, _ := f.ReadAt(head[:min(int64(len(head)), size)], off)
	if compressedHead(head[:n]) {
		return nil, nil
	}
	return l, nil
}

// compressedHead tells a stream that starts as a gzip, xz or zstd one does.
func compressedHead(head []byte) bool {
	return bytes.HasPrefix(head, magicGzip) || bytes.HasPrefix(head, magicXz) || bytes.HasPrefix(head, magicZstd)
}

// memberRegion finds the regular file name in the tar archive src: the offset and size of its body; a
// size of -1 when it is a link, which the flattening follows, or no plain file.
func memberRegion(src, name string) (int64, int64, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, 0, fmt.Errorf("docker archive %s: %w", src, err)
	}
	defer f.Close()
	r := &skipReader{f: f, buf: make([]byte, 16<<10)}
	tr := tar.NewReader(r)
	want := path.Clean(name)
	for {
		h, err := tr.Next()
		if err != nil {
			return 0, 0, fmt.Errorf("docker archive %s: layer %s: %w", src, name, err)
		}
		if path.Clean(h.Name) != want {
			continue
		}
		if (h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA) || sparse(h) {
			return 0, -1, nil
		}
		return r.pos, h.Size, nil
	}
}

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

// Whiteout tells an image layer's entry that hides a lower layer's: a whiteout file or an opaque
// directory marker.
func Whiteout(name string) bool {
	return strings.HasPrefix(path.Base(name), ".wh.")
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
