package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/container"
	"github.com/hostos/hostos/rootfs/tree"
)

// openRegistry pulls an image from a registry into an OCI layout in TempDir and makes it into an image.
func openRegistry(ctx context.Context, ref string, o Options) (*Payload, error) {
	if err := refuseUnsigned(ref, "registry image", o); err != nil {
		return nil, err
	}
	if err := needSlotSize(ref, o); err != nil {
		return nil, err
	}
	c, err := containerOptions(o)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", ref, err)
	}
	s := strings.TrimPrefix(strings.TrimPrefix(ref, prefixDocker), prefixOCI)
	img, err := container.Open(ctx, container.PrefixRegistry+s, c)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", ref, platformError(err, o))
	}
	total, err := imageBytes(img)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", ref, err)
	}
	if limit := streamLimit(o.RootSize); total > limit {
		return nil, fmt.Errorf("update %s: %w: its layers are %d MiB, more than the %d MiB a slot of %d MiB can take",
			ref, ErrTooLarge, ceilMiB(total), limit/mib, o.RootSize/mib)
	}
	work, err := os.MkdirTemp(o.TempDir, ".hostos-update-")
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", ref, err)
	}
	dir := filepath.Join(work, "oci")
	var done atomic.Int64
	img = &countedImage{Image: img, fn: func(n int64) { o.Progress("download", done.Add(n), total) }}
	if err := writeLayout(dir, img); err != nil {
		os.RemoveAll(work)
		return nil, fmt.Errorf("update %s: pull: %w", ref, err)
	}
	return fromTree(ctx, ref, dir, tree.KindOCI, work, o)
}

// containerOptions are the options of hostapp/container for the target: its platform, the credentials
// and the timeouts.
func containerOptions(o Options) (container.Options, error) {
	c := container.Options{Auth: o.RegistryAuth, Fetch: o.Fetch}
	if o.DeviceType == "" {
		return c, nil
	}
	dt, err := config.LookupDeviceType(o.DeviceType)
	if err != nil {
		return c, err
	}
	if c.Platform, err = container.PlatformOf(dt.Arch); err != nil {
		return c, fmt.Errorf("device type %s: %w", dt.Slug, err)
	}
	return c, nil
}

// platformError marks an image for another platform as ErrWrongDeviceType when a device type was given.
func platformError(err error, o Options) error {
	if o.DeviceType != "" && errors.Is(err, container.ErrPlatform) {
		return fmt.Errorf("%w: %w", ErrWrongDeviceType, err)
	}
	return err
}

// imageBytes is the compressed size of an image's layers and config, as its manifest says.
func imageBytes(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	total := m.Config.Size
	for _, l := range m.Layers {
		if l.Size < 0 {
			return 0, fmt.Errorf("layer %s: negative size", l.Digest)
		}
		total += l.Size
	}
	return total, nil
}

// writeLayout writes img as the only image of a new OCI layout at dir.
func writeLayout(dir string, img v1.Image) error {
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return lp.AppendImage(img)
}

// singleImageLayout returns an OCI layout of the one image of src for o's platform: src itself when it
// holds one image (checked against the platform), else a copy at dst of the image for the platform
// (tree.Stage would otherwise take linux/amd64).
func singleImageLayout(ctx context.Context, src, dst string, o Options) (string, error) {
	c, err := containerOptions(o)
	if err != nil {
		return "", err
	}
	img, err := container.Open(ctx, src, c)
	if err != nil {
		return "", platformError(err, o)
	}
	idx, err := layout.ImageIndexFromPath(src)
	if err != nil {
		return "", fmt.Errorf("OCI layout %s: %w", src, err)
	}
	all, err := tree.Images(idx)
	if err != nil {
		return "", fmt.Errorf("OCI layout %s: %w", src, err)
	}
	if len(all) <= 1 {
		return src, nil
	}
	if err := writeLayout(dst, img); err != nil {
		return "", fmt.Errorf("OCI layout %s: %w", src, err)
	}
	return dst, nil
}

// checkImagePlatform refuses a docker save archive or OCI archive for another platform than the target's.
func checkImagePlatform(ctx context.Context, src string, o Options) error {
	c, err := containerOptions(o)
	if err != nil {
		return err
	}
	if _, err := container.Open(ctx, src, c); err != nil {
		return platformError(err, o)
	}
	return nil
}

// countedImage reports the bytes of its layers as they are read.
type countedImage struct {
	v1.Image
	fn func(n int64)
}

func (i *countedImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for j, l := range ls {
		out[j] = &countedLayer{Layer: l, fn: i.fn}
	}
	return out, nil
}

func (i *countedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return &countedLayer{Layer: l, fn: i.fn}, nil
}

type countedLayer struct {
	v1.Layer
	fn func(n int64)
}

func (l *countedLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	return &countedReadCloser{ReadCloser: rc, fn: l.fn}, nil
}

type countedReadCloser struct {
	io.ReadCloser
	fn func(n int64)
}

func (c *countedReadCloser) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if n > 0 {
		c.fn(int64(n))
	}
	return n, err
}
