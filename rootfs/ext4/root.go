package ext4

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hostos/hostos/rootfs/tree"
)

// Root is a root filesystem source made ready to become an ext4 filesystem: a staged tree (a directory
// is used in place; an archive or a container image is staged), or an ext4 image copied as it is. It is
// the one way build, bundle create and update turn what they are given into a root filesystem.
type Root struct {
	Tree  *tree.Staged // nil for an ext4 image
	Image string       // the ext4 image, when Tree is nil

	staged  string // the directory staging made on disk, which Close removes
	release func() // removes the directory staging made in memory
}

// OpenRoot readies src: a directory in place, an ext4 image as it is, anything else (tar, compressed tar,
// OCI layout, docker save archive) staged: in memory (a tmpfs) when there is room for it, into work/root
// otherwise. progress follows the staging. Close removes what was staged.
//
// limit, when positive, is the size of the partition the filesystem is for: staging stops, with an error
// wrapping ErrNoSpace, once the tree takes more than twice that (a tree that fits takes far less: see
// Stage's count), so that a huge or endless archive fails in bounded time and room instead of filling
// the disk before the fit check.
func OpenRoot(ctx context.Context, src, work string, limit int64, progress func(done, total int64)) (*Root, error) {
	kind, err := tree.Detect(src)
	if err != nil {
		return nil, fmt.Errorf("root filesystem: %w", err)
	}
	return StageRoot(ctx, src, kind, work, limit, progress)
}

// StageRoot is OpenRoot for a source whose kind the caller detected (and checked) already.
func StageRoot(ctx context.Context, src string, kind tree.Kind, work string, limit int64, progress func(done, total int64)) (*Root, error) {
	var (
		t   *tree.Staged
		err error
	)
	switch kind {
	case tree.KindExt4:
		return &Root{Image: src}, nil
	case tree.KindDir:
		t, err = tree.Scan(src)
	default:
		return stageArchive(ctx, src, kind, work, limit, progress)
	}
	if err != nil {
		return nil, fmt.Errorf("root filesystem %s: %w", src, err)
	}
	return &Root{Tree: t}, nil
}

// stagingLimit is how much staged tree (as tree.StageWithin counts it) a partition of size bytes could
// still take: twice its size, 0 for no limit.
func stagingLimit(size int64) int64 {
	if size <= 0 {
		return 0
	}
	return 2 * size
}

// stageArchive stages an archive in a tmpfs when one has room for it (see memoryStage), and when it
// turns out not to, or there is none, into work/root. Staging in memory keeps a build from an archive
// close to one from the same tree as a directory: on disk, writing the tree, its writeback and its
// removal cost more than the build itself. Past stagingLimit(limit) it fails with ErrNoSpace.
func stageArchive(ctx context.Context, src string, kind tree.Kind, work string, limit int64, progress func(done, total int64)) (*Root, error) {
	most := stagingLimit(limit)
	tooBig := func() error {
		return fmt.Errorf("root filesystem %s does not fit: more than %d MiB staged, twice the %d MiB partition: %w",
			src, most>>20, limit>>20, ErrNoSpace)
	}
	if mem, release, room, ok := memoryStage(work); ok {
		capped := most > 0 && most <= room
		if capped {
			room = most
		}
		t, err := tree.StageWithin(ctx, src, kind, filepath.Join(mem, "root"), room, progress)
		if err == nil {
			return &Root{Tree: t, release: release}, nil
		}
		release()
		if !noRoom(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("root filesystem %s: %w", src, err)
		}
		if capped && errors.Is(err, tree.ErrNoRoom) {
			return nil, tooBig()
		}
	}
	dir := filepath.Join(work, "root")
	t, err := tree.StageWithin(ctx, src, kind, dir, most, progress)
	if errors.Is(err, tree.ErrNoRoom) {
		os.RemoveAll(dir)
		return nil, tooBig()
	}
	if err != nil {
		return nil, fmt.Errorf("root filesystem %s: %w", src, err)
	}
	return &Root{Tree: t, staged: dir}, nil
}

// Close removes the tree staged from an archive; a directory or an ext4 image source is left alone.
func (r *Root) Close() error {
	if r == nil {
		return nil
	}
	if r.release != nil {
		r.release()
		r.release = nil
	}
	if r.staged == "" {
		return nil
	}
	err := os.RemoveAll(r.staged)
	r.staged = ""
	if err != nil {
		return fmt.Errorf("remove the staged root filesystem: %w", err)
	}
	return nil
}

// Need is the size in bytes of the smallest filesystem holding r with options o: the estimate for a
// tree, the filesystem's own size for an ext4 image.
func (r *Root) Need(o Options) (int64, error) {
	if r.Tree != nil {
		return Estimate(r.Tree, o), nil
	}
	f, err := os.Open(r.Image)
	if err != nil {
		return 0, fmt.Errorf("root filesystem: %w", err)
	}
	defer f.Close()
	n, err := FilesystemSize(f, 0)
	if err != nil {
		return 0, fmt.Errorf("root filesystem image %s: %w", r.Image, err)
	}
	return n, nil
}

// Fit refuses, with an error wrapping ErrNoSpace that names the shortfall, a root that does not fit a
// filesystem of size bytes (what names the place: "the root partition", "the slot").
func (r *Root) Fit(size int64, o Options, what string) error {
	need, err := r.Need(o)
	if err != nil {
		return err
	}
	if need > size {
		return fmt.Errorf("root filesystem does not fit: it needs %d MiB, %s has %d MiB (short by %d MiB): %w",
			ceilMiB(need), what, size>>20, ceilMiB(need-size), ErrNoSpace)
	}
	return nil
}

func ceilMiB(n int64) int64 { return (n + 1<<20 - 1) >> 20 }

// Write makes the filesystem at [off, off+size) of img: Make from the tree, or a copy of the ext4 image
// carrying label ("" keeps no label).
func (r *Root) Write(ctx context.Context, img string, off, size int64, o Options, label string) error {
	if r.Tree != nil {
		return Make(ctx, img, off, size, o, r.Tree)
	}
	if err := CopyImage(ctx, img, off, size, r.Image, label); err != nil {
		return err
	}
	if label == "" {
		d := Debugfs{Image: img, Offset: off, Time: o.Time}
		if err := d.Apply(ctx, []string{`ssv volume_name ""`}); err != nil {
			return fmt.Errorf("clear the label of the copy of %s: %w", r.Image, err)
		}
	}
	return nil
}
