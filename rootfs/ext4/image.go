package ext4

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/hostos/hostos/partition/disk"
)

// Superblock fields CopyImage reads.
const (
	superblockOffset  = 1024
	sbBlocksCountLo   = 0x04
	sbLogBlockSize    = 0x18
	sbMagic           = 0x38
	sbFeatureIncompat = 0x60
	sbBlocksCountHi   = 0x150
	incompat64bit     = 0x80
	magic             = 0xef53
)

// FilesystemSize reads the size in bytes of the ext4 filesystem at offset off of r from its superblock.
func FilesystemSize(r io.ReaderAt, off int64) (int64, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, off+superblockOffset); err != nil {
		return 0, fmt.Errorf("ext4 superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[sbMagic:]) != magic {
		return 0, errors.New("ext4 superblock: bad magic")
	}
	log := binary.LittleEndian.Uint32(sb[sbLogBlockSize:])
	if log > 6 {
		return 0, fmt.Errorf("ext4 superblock: block size 2^%d KiB out of range", log)
	}
	blocks := int64(binary.LittleEndian.Uint32(sb[sbBlocksCountLo:]))
	if binary.LittleEndian.Uint32(sb[sbFeatureIncompat:])&incompat64bit != 0 {
		blocks |= int64(binary.LittleEndian.Uint32(sb[sbBlocksCountHi:])) << 32
	}
	return blocks * (1024 << log), nil
}

const copyChunk = 1 << 20

// CopyImage copies the ext4 filesystem image srcImage as it is into the partition of size bytes at
// offset off of img, keeping holes for zero runs, and sets its volume label when label is not empty.
func CopyImage(ctx context.Context, img string, off, size int64, srcImage, label string) error {
	if len(label) > maxLabel {
		return fmt.Errorf("label %q: longer than %d bytes", label, maxLabel)
	}
	if err := checkRange(img, off, size); err != nil {
		return err
	}
	src, err := os.Open(srcImage)
	if err != nil {
		return fmt.Errorf("ext4 image %s: %w", srcImage, err)
	}
	defer src.Close()
	n, err := FilesystemSize(src, 0)
	if err != nil {
		return fmt.Errorf("ext4 image %s: %w", srcImage, err)
	}
	if n > size {
		return fmt.Errorf("ext4 image %s does not fit in a %d MiB partition: %d MiB short: %w",
			srcImage, size>>20, (n-size+mib-1)/mib, ErrNoSpace)
	}
	dst, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("image %s: %w", img, err)
	}
	defer dst.Close()
	buf := make([]byte, copyChunk)
	zero := make([]byte, copyChunk)
	for done := int64(0); done < n; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("copy %s into %s: %w", srcImage, img, err)
		}
		chunk := buf[:min(int64(len(buf)), n-done)]
		if _, err := io.ReadFull(io.NewSectionReader(src, done, int64(len(chunk))), chunk); err != nil {
			return fmt.Errorf("ext4 image %s: truncated at %d of %d bytes: %w", srcImage, done, n, err)
		}
		at := off + done
		if bytes.Equal(chunk, zero[:len(chunk)]) &&
			disk.PunchHole(dst, at, int64(len(chunk))) == nil {
			done += int64(len(chunk))
			continue
		}
		if _, err := dst.WriteAt(chunk, at); err != nil {
			return fmt.Errorf("copy %s into %s: %w", srcImage, img, err)
		}
		done += int64(len(chunk))
	}
	if err := dst.Sync(); err != nil {
		return fmt.Errorf("image %s: %w", img, err)
	}
	if label == "" {
		return nil
	}
	q, err := Quote(label)
	if err != nil {
		return err
	}
	d := Debugfs{Image: img, Offset: off}
	if err := d.Apply(ctx, []string{"ssv volume_name " + q}); err != nil {
		return fmt.Errorf("label the copy of %s: %w", srcImage, err)
	}
	return nil
}

// Check runs e2fsck -fn on the filesystem at offset off of img; the error carries the end of its report.
func Check(ctx context.Context, img string, off int64) error {
	dev, err := device(img, off)
	if err != nil {
		return err
	}
	bin, err := e2fsprogs("e2fsck")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "-fn", dev)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("e2fsck on %s: %w: %s", dev, err, tail(strings.Split(strings.TrimSpace(out.String()), "\n")))
	}
	return nil
}
