package build

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/ext4"
)

// BundleOptions says what Bundle puts into an update bundle.
type BundleOptions struct {
	// Rootfs is the root filesystem source, anything a spec's [rootfs] source takes: a directory, a tar
	// archive (plain, gzip, xz, zstd), an OCI image layout, a docker save archive or an ext4 image. Empty
	// means the embedded default root filesystem.
	Rootfs string
	// DeviceType is the device-type slug of the registry; the bundle's arch is the device type's.
	DeviceType string
	// Version is the OS version the bundle installs; required.
	Version string
	// DeployDir is the base of relative sources in BootFiles; empty means the current directory.
	DeployDir string
	// BootFiles are "src:dst" entries with meta-balena's semantics, as a spec's [boot] files; they become
	// the bundle's boot files. None gives a bundle without boot member.
	BootFiles []string
	// Key signs the bundle; nil makes an unsigned one.
	Key ed25519.PrivateKey
	// Epoch is the bundle's creation time. Set (SOURCE_DATE_EPOCH), it is also every time in the
	// filesystem and its identifiers derive from the inputs, so the same inputs give the same bytes.
	// Zero means now, with random filesystem identifiers.
	Epoch time.Time
	// RootSize is the size in bytes of the ext4 filesystem made from a tree, a multiple of 4 KiB; zero
	// means the device type's root partition size. An ext4 image source keeps its own size, which must
	// not exceed it.
	RootSize int64
	// TempDir is where the root filesystem is staged and the image made; empty means os.TempDir().
	TempDir string
	// DeltaFrom, when set, makes a delta bundle against this base (an older version's root filesystem):
	// see bundle.CreateOptions.Base.
	DeltaFrom *bundle.DeltaBase
	// ChunkStore, when set, makes a chunked bundle whose chunks go into this directory: see
	// bundle.CreateOptions.ChunkStore.
	ChunkStore string
	// Progress, when set, is called with the step, done and total.
	Progress ProgressFunc
}

func (o *BundleOptions) check() error {
	switch {
	case o.DeviceType == "":
		return errors.New("bundle: no device type")
	case o.Version == "":
		return errors.New("bundle: no version")
	case o.RootSize < 0 || o.RootSize%4096 != 0:
		return fmt.Errorf("bundle: root filesystem size %d: negative or not a multiple of 4 KiB", o.RootSize)
	case o.Key != nil && len(o.Key) != ed25519.PrivateKeySize:
		return fmt.Errorf("bundle: signing key is %d bytes, want %d", len(o.Key), ed25519.PrivateKeySize)
	case !o.Epoch.IsZero() && o.Epoch.Unix() <= 0:
		return fmt.Errorf("bundle: epoch %s: not after 1970", o.Epoch)
	}
	for _, f := range o.BootFiles {
		if _, err := ParseBootFile(f); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
	}
	return nil
}

// Bundle makes an update bundle (see package bundle) and streams it to w: the root filesystem source
// staged as Build stages it and made into an ext4 filesystem of o.RootSize bytes, and the boot files
// o.BootFiles name. It returns the bundle's metadata.
//
// The filesystem carries no volume label: whoever writes it into a root slot gives it that slot's
// label (resin-rootA or resin-rootB). Bundle refuses a root filesystem that does not fit o.RootSize
// before it makes anything. When it fails after it has started writing, w holds the start of a bundle
// that readers reject.
func Bundle(ctx context.Context, o BundleOptions, w io.Writer) (bundle.Metadata, error) {
	if err := o.check(); err != nil {
		return bundle.Metadata{}, err
	}
	progress := o.Progress
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	dt, err := config.LookupDeviceType(o.DeviceType)
	if err != nil {
		return bundle.Metadata{}, fmt.Errorf("bundle: %w", err)
	}
	rootSize := o.RootSize
	if rootSize == 0 {
		rootSize = int64(dt.Sizes.Root) * mib
	}
	p := &plan{spec: &Spec{DeviceType: dt.Slug, Version: o.Version}, dt: dt, version: o.Version,
		mtime: time.Now().UTC().Truncate(time.Second)}
	if !o.Epoch.IsZero() {
		p.mtime = o.Epoch.UTC().Truncate(time.Second)
	}

	work, err := os.MkdirTemp(o.TempDir, ".hostos-bundle-")
	if err != nil {
		return bundle.Metadata{}, fmt.Errorf("bundle: %w", err)
	}
	defer os.RemoveAll(work)

	src := o.Rootfs
	if src == "" {
		src = filepath.Join(work, "default-root.tar")
		if err := p.writeDefaultRoot(src); err != nil {
			return bundle.Metadata{}, err
		}
	}
	rootfs, err := ext4.OpenRoot(ctx, src, work, rootSize, func(done, total int64) { progress("stage root filesystem", done, total) })
	if err != nil {
		return bundle.Metadata{}, err
	}
	defer rootfs.Close()
	if err := rootfs.Fit(rootSize, ext4.Options{InodeRatio: rootInodeRatio}, "the root partition"); err != nil {
		return bundle.Metadata{}, err
	}
	img := filepath.Join(work, "rootfs.ext4")
	if err := p.bundleImage(ctx, img, rootfs, rootSize, !o.Epoch.IsZero(), progress); err != nil {
		return bundle.Metadata{}, err
	}
	// The staged copy is no longer needed; free its space before compressing.
	rootfs.Close()

	bootDir := ""
	if len(o.BootFiles) > 0 {
		bootDir = filepath.Join(work, "boot")
		if err := stageBootFiles(o.BootFiles, o.DeployDir, bootDir); err != nil {
			return bundle.Metadata{}, err
		}
	}
	return bundle.Create(ctx, bundle.CreateOptions{
		DeviceType: dt.Slug, Arch: dt.Arch, Version: o.Version, Created: p.mtime.Unix(),
		Image: img, BootDir: bootDir, Key: o.Key, TempDir: work, Base: o.DeltaFrom, ChunkStore: o.ChunkStore,
		Progress: func(done, total int64) { progress("bundle", done, total) },
	}, w)
}

// bundleImage makes the unlabelled root filesystem image of a bundle at img: from the staged tree,
// size bytes large, or a copy of an ext4 image at its own size.
func (p *plan) bundleImage(ctx context.Context, img string, root *ext4.Root, size int64, reproducible bool, progress ProgressFunc) error {
	const step = "make root filesystem"
	progress(step, 0, 1)
	fo := ext4.Options{InodeRatio: rootInodeRatio}
	if reproducible {
		h := sha256.New()
		fmt.Fprintf(h, "hostos bundle\n%s\n%s\n%d\n%d\n", p.dt.Slug, p.version, p.mtime.Unix(), size)
		if root.Tree != nil {
			fmt.Fprintf(h, "%d %d\n", root.Tree.Entries, root.Tree.Bytes)
		}
		p.seed = h.Sum(nil)
		fo.Time = p.mtime
		fo.UUID = p.derivedUUID("fs-uuid rootfs")
		fo.HashSeed = p.derivedUUID("hash-seed rootfs")
	}
	if root.Tree == nil {
		var err error
		if size, err = root.Need(fo); err != nil {
			return err
		}
	}
	if err := createSized(img, size); err != nil {
		return fmt.Errorf("root filesystem image: %w", err)
	}
	if err := root.Write(ctx, img, 0, size, fo, ""); err != nil {
		return fmt.Errorf("root filesystem: %w", err)
	}
	progress(step, 1, 1)
	return nil
}

// createSized creates the empty (sparse) file path of size bytes.
func createSized(path string, size int64) error {
	d, err := disk.Create(path, size)
	if err != nil {
		return err
	}
	return d.Close()
}

// stageBootFiles copies the files "src:dst" entries name into dir, at their destinations; a later entry
// for the same destination replaces an earlier one.
func stageBootFiles(entries []string, deployDir, dir string) error {
	files, err := expandBootFiles(entries, deployDir)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("boot files: %w", err)
	}
	for _, f := range files {
		dst := filepath.Join(dir, filepath.FromSlash(f.Dst))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("boot file %s: %w", f.Dst, err)
		}
		if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
			return fmt.Errorf("boot file %s: a directory of other boot files is there", f.Dst)
		}
		if err := copyBootFile(f.Src, dst); err != nil {
			return fmt.Errorf("boot file %s: %w", f.Dst, err)
		}
	}
	return nil
}

func copyBootFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
