package preload

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxSaveManifest bounds the manifest.json read from a docker save archive.
const maxSaveManifest = 1 << 20

// savedLayers tells whether src is a docker save archive read as such (manifest.json, without the OCI
// index that docker 25 adds), and returns the sizes of its image's layer tars in order. Its layers are
// uncompressed tars: go-containerregistry would gzip each one to give it a compressed digest and stream,
// which is all the work of a preload twice over, and a digest no engine records for a loaded image.
func savedLayers(src string) ([]int64, bool) {
	f, err := os.Open(src)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	sizes := map[string]int64{}
	var manifest []byte
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, false
		}
		name := path.Clean(h.Name)
		sizes[name] = h.Size
		if name == "manifest.json" && h.Size <= maxSaveManifest {
			if manifest, err = io.ReadAll(tr); err != nil {
				return nil, false
			}
		}
	}
	if _, ok := sizes["oci-layout"]; ok {
		if _, ok := sizes["index.json"]; ok {
			return nil, false
		}
	}
	var entries []struct{ Layers []string }
	if json.Unmarshal(manifest, &entries) != nil || len(entries) != 1 {
		return nil, false
	}
	var out []int64
	for _, l := range entries[0].Layers {
		n, ok := sizes[path.Clean(l)]
		if !ok {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

// savedImage is an image of a docker save archive whose layers are given as the archive holds them:
// uncompressed, their blob digest the diffID.
type savedImage struct {
	v1.Image
	sizes []int64
}

func (i savedImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for j, l := range ls {
		var n int64 = -1
		if j < len(i.sizes) && len(ls) == len(i.sizes) {
			n = i.sizes[j]
		}
		out[j] = savedLayer{Layer: l, size: n}
	}
	return out, nil
}

type savedLayer struct {
	v1.Layer
	size int64
}

func (l savedLayer) Digest() (v1.Hash, error)            { return l.DiffID() }
func (l savedLayer) Compressed() (io.ReadCloser, error)  { return l.Uncompressed() }
func (l savedLayer) MediaType() (types.MediaType, error) { return types.DockerUncompressedLayer, nil }
func (l savedLayer) Size() (int64, error) {
	if l.size < 0 {
		return 0, errors.New("docker save archive: layer size unknown")
	}
	return l.size, nil
}
