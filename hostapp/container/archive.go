package container

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxArchiveEntries bounds the tar entries of an image archive read: a docker save or OCI archive holds
// a few per layer, so a root filesystem tar given by mistake is told in bounded time.
const maxArchiveEntries = 100000

// span is where a member's content lies in the archive file.
type span struct{ off, size int64 }

// archive is an image archive file: where each regular member lies.
type archive struct {
	path    string
	members map[string]span
}

// compressed magic numbers, to say so instead of "not a tar".
var compressedMagic = [][]byte{{0x1f, 0x8b}, {0x28, 0xb5, 0x2f, 0xfd}, {0xfd, '7', 'z', 'X', 'Z', 0x00}}

// openArchive opens a docker save archive or an OCI archive. An archive holding both (docker 25 and
// later) is read through its OCI index, which keeps the manifests' own digests.
func openArchive(p string, want v1.Platform) (v1.Image, error) {
	a, err := indexArchive(p)
	if err != nil {
		return nil, err
	}
	_, hasLayout := a.members["oci-layout"]
	_, hasIndex := a.members["index.json"]
	_, hasManifest := a.members["manifest.json"]
	switch {
	case hasLayout && hasIndex:
		raw, err := a.read("index.json", maxManifest)
		if err != nil {
			return nil, err
		}
		return pick(&archiveIndex{a: a, raw: raw, mt: types.OCIImageIndex}, want)
	case hasManifest:
		return a.dockerImage(want)
	}
	return nil, errors.New("a file that is no image archive (no manifest.json, no oci-layout and index.json)")
}

// indexArchive lists the regular members of a plain tar file and where their content lies.
func indexArchive(p string) (*archive, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, 6)
	n, _ := io.ReadFull(f, head)
	for _, m := range compressedMagic {
		if bytes.HasPrefix(head[:n], m) {
			return nil, errors.New("a compressed file: image archives are read as plain tar; decompress it first")
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	a := &archive{path: p, members: map[string]span{}}
	// archive/tar reads whole header blocks and skips content by seeking, so after Next the file's
	// offset is where the member's content starts.
	tr := tar.NewReader(f)
	for i := 0; ; i++ {
		if i == maxArchiveEntries {
			return nil, fmt.Errorf("more than %d tar entries: no image archive", maxArchiveEntries)
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("tar archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA {
			continue
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		a.members[path.Clean(strings.TrimPrefix(h.Name, "./"))] = span{off, h.Size}
	}
	if len(a.members) == 0 {
		return nil, errors.New("an empty tar archive")
	}
	return a, nil
}

// open returns a reader of the member name.
func (a *archive) open(name string) (io.ReadCloser, int64, error) {
	s, ok := a.members[name]
	if !ok {
		return nil, 0, fmt.Errorf("%s: not in the archive", name)
	}
	f, err := os.Open(a.path)
	if err != nil {
		return nil, 0, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, s.off, s.size), f}, s.size, nil
}

// read returns the member name, at most limit bytes.
func (a *archive) read(name string, limit int64) ([]byte, error) {
	rc, size, err := a.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", name, size, limit)
	}
	return io.ReadAll(rc)
}

func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// blob opens the blob h of an OCI archive, checked against its digest and size as it is read.
func (a *archive) blob(d v1.Descriptor) (io.ReadCloser, error) {
	if d.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("blob %s: unsupported digest algorithm", d.Digest)
	}
	rc, size, err := a.open(blobName(d.Digest))
	if err != nil {
		return nil, err
	}
	if d.Size >= 0 && size != d.Size {
		rc.Close()
		return nil, fmt.Errorf("blob %s: %d bytes, the descriptor says %d", d.Digest, size, d.Size)
	}
	return &verified{rc: rc, h: sha256.New(), want: d.Digest}, nil
}

// readBlob reads a small blob (a manifest, a config) and checks its digest.
func (a *archive) readBlob(d v1.Descriptor, limit int64) ([]byte, error) {
	if d.Size > limit {
		return nil, fmt.Errorf("blob %s: %d bytes, more than %d", d.Digest, d.Size, limit)
	}
	rc, err := a.blob(d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// verified fails the read that ends a blob whose content does not match its digest.
type verified struct {
	rc   io.ReadCloser
	h    hash.Hash
	want v1.Hash
}

func (v *verified) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF && hex.EncodeToString(v.h.Sum(nil)) != v.want.Hex {
		return n, fmt.Errorf("blob %s: digest mismatch", v.want)
	}
	return n, err
}

func (v *verified) Close() error { return v.rc.Close() }

// archiveIndex is an image index held in an OCI archive.
type archiveIndex struct {
	a   *archive
	raw []byte
	mt  types.MediaType
}

func (x *archiveIndex) MediaType() (types.MediaType, error) { return x.mt, nil }
func (x *archiveIndex) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(x.raw))
	return h, err
}
func (x *archiveIndex) Size() (int64, error)         { return int64(len(x.raw)), nil }
func (x *archiveIndex) RawManifest() ([]byte, error) { return x.raw, nil }
func (x *archiveIndex) IndexManifest() (*v1.IndexManifest, error) {
	return v1.ParseIndexManifest(bytes.NewReader(x.raw))
}

func (x *archiveIndex) descriptor(h v1.Hash) (v1.Descriptor, error) {
	m, err := x.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, d := range m.Manifests {
		if d.Digest == h {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("manifest %s: not in the index", h)
}

func (x *archiveIndex) Image(h v1.Hash) (v1.Image, error) {
	d, err := x.descriptor(h)
	if err != nil {
		return nil, err
	}
	raw, err := x.a.readBlob(d, maxManifest)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", h, err)
	}
	cfg, err := x.a.readBlob(m.Config, maxConfig)
	if err != nil {
		return nil, err
	}
	mt := d.MediaType
	if m.MediaType != "" {
		mt = m.MediaType
	}
	return partial.CompressedToImage(&archiveImage{a: x.a, raw: raw, cfg: cfg, mt: mt, m: m})
}

func (x *archiveIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	d, err := x.descriptor(h)
	if err != nil {
		return nil, err
	}
	raw, err := x.a.readBlob(d, maxManifest)
	if err != nil {
		return nil, err
	}
	return &archiveIndex{a: x.a, raw: raw, mt: d.MediaType}, nil
}

// archiveImage is an image of an OCI archive: manifest and config read, layers read on demand.
type archiveImage struct {
	a   *archive
	raw []byte
	cfg []byte
	mt  types.MediaType
	m   *v1.Manifest
}

func (i *archiveImage) RawConfigFile() ([]byte, error)      { return i.cfg, nil }
func (i *archiveImage) MediaType() (types.MediaType, error) { return i.mt, nil }
func (i *archiveImage) RawManifest() ([]byte, error)        { return i.raw, nil }

func (i *archiveImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range i.m.Layers {
		if d.Digest == h {
			return &archiveLayer{a: i.a, d: d}, nil
		}
	}
	return nil, fmt.Errorf("layer %s: not in the manifest", h)
}

type archiveLayer struct {
	a *archive
	d v1.Descriptor
}

func (l *archiveLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *archiveLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *archiveLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }
func (l *archiveLayer) Compressed() (io.ReadCloser, error)  { return l.a.blob(l.d) }

// dockerImage opens the one image of a docker save archive.
func (a *archive) dockerImage(want v1.Platform) (v1.Image, error) {
	raw, err := a.read("manifest.json", maxManifest)
	if err != nil {
		return nil, err
	}
	var entries []struct{ RepoTags []string }
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	switch len(entries) {
	case 0:
		return nil, errors.New("manifest.json lists no image")
	case 1:
	default:
		var tags []string
		for _, e := range entries {
			tags = append(tags, strings.Join(e.RepoTags, " "))
		}
		return nil, fmt.Errorf("a docker archive of %d images (%s): save one image per archive", len(entries), strings.Join(tags, ", "))
	}
	img, err := tarball.Image(func() (io.ReadCloser, error) { return os.Open(a.path) }, nil)
	if err != nil {
		return nil, fmt.Errorf("docker archive: %w", err)
	}
	if err := checkPlatform(img, want); err != nil {
		return nil, err
	}
	return img, nil
}
