package ext4

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ShortError is ErrNoSpace with the shortfall: what a write needs beyond the filesystem's free space.
type ShortError struct {
	// Blocks and Inodes are what is missing (zero when enough), in BlockSize-byte blocks.
	Blocks, Inodes, BlockSize int64
	msg                       string
}

func (e *ShortError) Error() string { return e.msg }
func (e *ShortError) Unwrap() error { return ErrNoSpace }

// Grow grows the ext4 filesystem at offset off of the image file img to size bytes with resize2fs. The
// bytes from off to off+size must belong to the filesystem's partition, already made that large.
// resize2fs takes no offset: the filesystem is copied sparsely to a temporary file beside img, grown
// there and copied back, so Grow is rootless; img only changes when resize2fs succeeded. t, when not
// zero, is the time resize2fs takes as now.
func Grow(ctx context.Context, img string, off, size int64, t time.Time) error {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("image %s: %w", img, err)
	}
	defer f.Close()
	have, err := FilesystemSize(f, off)
	if err != nil {
		return fmt.Errorf("image %s: %w", img, err)
	}
	if size < have {
		return fmt.Errorf("grow ext4 at %d of %s: %d bytes is smaller than its %d", off, img, size, have)
	}
	if size == have {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(img), "."+filepath.Base(img)+".resize-")
	if err != nil {
		return fmt.Errorf("grow ext4: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := copyRange(tmp, 0, f, off, have); err != nil {
		return fmt.Errorf("grow ext4 at %d of %s: copy out: %w", off, img, err)
	}
	if err := tmp.Truncate(size); err != nil {
		return fmt.Errorf("grow ext4: %w", err)
	}
	bin, err := e2fsprogs("resize2fs")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "-f", tmp.Name(), strconv.FormatInt(size>>10, 10)+"K")
	cmd.Env = Debugfs{Time: t}.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("resize2fs: %w", ctx.Err())
		}
		return fmt.Errorf("resize2fs of ext4 at %d of %s: %w: %s", off, img, err, tail(strings.Split(strings.TrimSpace(string(out)), "\n")))
	}
	if err := copyRange(f, off, tmp, 0, size); err != nil {
		return fmt.Errorf("grow ext4 at %d of %s: copy back: %w", off, img, err)
	}
	return nil
}

// copyRange copies the n bytes at src offset so to dst offset do, skipping the holes of src.
func copyRange(dst *os.File, do int64, src *os.File, so, n int64) error {
	buf := make([]byte, 1<<20)
	end := so + n
	for pos := so; pos < end; {
		data, hole, ok := nextData(src, pos)
		if !ok || data >= end {
			return nil
		}
		hole = min(hole, end)
		for data < hole {
			k := min(hole-data, int64(len(buf)))
			if _, err := src.ReadAt(buf[:k], data); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if _, err := dst.WriteAt(buf[:k], do+data-so); err != nil {
				return err
			}
			data += k
		}
		pos = hole
	}
	return nil
}
