package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hostos/hostos/hostapp/container"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/tree"
)

// The ext4 geometry of root filesystems, as hostos build makes them.
const (
	rootInodeRatio = 8192
	blockSize      = 4096
)

// fromFile opens a local file that is not a bundle: an ext4 image is streamed as it is, an archive made
// into an image. work, when not empty, is a staging directory of the caller's (holding path, perhaps)
// that the payload takes over.
func fromFile(ctx context.Context, what, path, work string, o Options) (*Payload, error) {
	kind, err := tree.Detect(path)
	if errors.Is(err, tree.ErrUnknownFormat) {
		if p, ok, aerr := fromOCIArchive(ctx, what, path, work, o); ok {
			return p, aerr
		}
	}
	if err != nil {
		removeWork(work)
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	if kind == tree.KindExt4 {
		return fromExt4(ctx, what, path, work, o)
	}
	return fromTree(ctx, what, path, kind, work, o)
}

// fromOCIArchive opens path as an OCI archive (a tar of an image layout), if it is one: the image for the
// target is copied into a layout in work and made into an image. ok is false when path is no OCI archive.
func fromOCIArchive(ctx context.Context, what, path, work string, o Options) (p *Payload, ok bool, err error) {
	c, err := containerOptions(o)
	if err != nil {
		return nil, false, nil
	}
	img, err := container.Open(ctx, path, c)
	if errors.Is(err, container.ErrPlatform) {
		removeWork(work)
		return nil, true, fmt.Errorf("update %s: %w", what, platformError(err, o))
	}
	if err != nil {
		return nil, false, nil
	}
	if err := needSlotSize(what, o); err != nil {
		removeWork(work)
		return nil, true, err
	}
	if work == "" {
		if work, err = os.MkdirTemp(o.TempDir, ".hostos-update-"); err != nil {
			return nil, true, fmt.Errorf("update %s: %w", what, err)
		}
	}
	dir := filepath.Join(work, "oci")
	if err := writeLayout(dir, img); err != nil {
		os.RemoveAll(work)
		return nil, true, fmt.Errorf("update %s: OCI archive: %w", what, err)
	}
	// The layout's copy replaces a downloaded archive.
	os.Remove(filepath.Join(work, "download"))
	p, err = fromTree(ctx, what, dir, tree.KindOCI, work, o)
	return p, true, err
}

func removeWork(work string) {
	if work != "" {
		os.RemoveAll(work)
	}
}

// fromExt4 streams the ext4 filesystem image at path as it is.
func fromExt4(ctx context.Context, what, path, work string, o Options) (*Payload, error) {
	f, err := os.Open(path)
	if err == nil {
		var p *Payload
		if p, err = ext4Payload(ctx, f, o); err == nil {
			p.Close = onceClose(func() error {
				err := f.Close()
				removeWork(work)
				return err
			})
			return p, nil
		}
		f.Close()
	}
	removeWork(work)
	return nil, fmt.Errorf("update %s: ext4 image: %w", what, err)
}

func ext4Payload(ctx context.Context, f *os.File, o Options) (*Payload, error) {
	size, err := ext4.FilesystemSize(f, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < size {
		return nil, fmt.Errorf("truncated: %d bytes of a %d byte filesystem", fi.Size(), size)
	}
	if o.RootSize > 0 && size > o.RootSize {
		return nil, fmt.Errorf("%w: the filesystem is %d MiB, the slot %d MiB", ErrTooLarge, ceilMiB(size), o.RootSize/mib)
	}
	return &Payload{Size: size, Image: &ctxReader{ctx: ctx, r: io.NewSectionReader(f, 0, size)}}, nil
}

// needSlotSize refuses to make an image when the slot size is unknown.
func needSlotSize(what string, o Options) error {
	if o.RootSize < blockSize {
		return fmt.Errorf("update %s: the slot size is needed to make an image of it: give a root size or a known device type", what)
	}
	return nil
}

// fromTree stages the root filesystem source src of the kind tree.Detect told (a directory, an archive,
// an OCI layout) in work (made
// when empty), makes it into an ext4 image of o.RootSize bytes (whole blocks) there and streams that image. Closing the
// payload removes work.
func fromTree(ctx context.Context, what, src string, kind tree.Kind, work string, o Options) (p *Payload, err error) {
	if err := needSlotSize(what, o); err != nil {
		removeWork(work)
		return nil, err
	}
	if work == "" {
		if work, err = os.MkdirTemp(o.TempDir, ".hostos-update-"); err != nil {
			return nil, fmt.Errorf("update %s: %w", what, err)
		}
	}
	defer func() {
		if err != nil {
			os.RemoveAll(work)
		}
	}()
	root, err := stage(ctx, src, kind, work, o)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	defer root.Close()
	// What the staged tree came from is no longer needed.
	os.Remove(filepath.Join(work, "download"))
	os.RemoveAll(filepath.Join(work, "oci"))
	os.RemoveAll(filepath.Join(work, "oci-pick"))

	size := o.RootSize / blockSize * blockSize
	opts := ext4.Options{InodeRatio: rootInodeRatio, BlockSize: blockSize}
	if err := root.Fit(size, opts, "the slot"); err != nil {
		return nil, fmt.Errorf("update %s: %w: %w", what, ErrTooLarge, err)
	}
	const step = "make root filesystem"
	o.Progress(step, 0, 1)
	img := filepath.Join(work, "rootfs.ext4")
	if err := createSized(img, size); err != nil {
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	if err := root.Write(ctx, img, 0, size, opts, ""); err != nil {
		if errors.Is(err, ext4.ErrNoSpace) {
			err = fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	root.Close()
	os.RemoveAll(filepath.Join(work, hostappDir))
	o.Progress(step, 1, 1)
	var boot func(func(string, int64, io.Reader) error) error
	if isContainerImage(kind) {
		if boot, err = resinBoot(ctx, img, size); err != nil {
			return nil, fmt.Errorf("update %s: %w", what, err)
		}
	}
	f, err := os.Open(img)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	return &Payload{
		Size:  size,
		Image: &ctxReader{ctx: ctx, r: f},
		Boot:  boot,
		Close: onceClose(func() error {
			err := f.Close()
			if rerr := os.RemoveAll(work); err == nil {
				err = rerr
			}
			return err
		}),
	}, nil
}

// stage readies src for ext4.Make: a directory is used in place, anything else is staged (ext4.StageRoot),
// once its entries and bytes were counted against the slot. Staging refuses entries that would land
// outside the root.
func stage(ctx context.Context, src string, kind tree.Kind, work string, o Options) (*ext4.Root, error) {
	var err error
	if o.Hostapp && kind == tree.KindOCI {
		if src, err = singleImageLayout(ctx, src, filepath.Join(work, "oci-pick"), o); err != nil {
			return nil, err
		}
	}
	if o.Hostapp {
		return stageHostapp(ctx, src, kind, work, o)
	}
	switch kind {
	case tree.KindDir:
		return ext4.StageRoot(ctx, src, kind, work, 0, nil)
	case tree.KindExt4:
		return nil, fmt.Errorf("%s: an ext4 image where a tree was expected", src)
	case tree.KindOCI:
		if src, err = singleImageLayout(ctx, src, filepath.Join(work, "oci-pick"), o); err != nil {
			return nil, err
		}
	case tree.KindDockerArchive:
		if err := checkImagePlatform(ctx, src, o); err != nil {
			return nil, err
		}
	}
	if err := checkFits(ctx, src, kind, o.RootSize/blockSize*blockSize, o.Progress); err != nil {
		return nil, err
	}
	return ext4.StageRoot(ctx, src, kind, work, 0, func(done, total int64) {
		o.Progress("stage root filesystem", done, total)
	})
}

// createSized creates the empty (sparse) file path of size bytes.
func createSized(path string, size int64) error {
	d, err := disk.Create(path, size)
	if err != nil {
		return err
	}
	return d.Close()
}
