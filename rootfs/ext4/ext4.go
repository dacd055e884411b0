// Package ext4 builds ext4 filesystems at a byte offset of an image file with mkfs.ext4 and debugfs, as an ordinary user.
package ext4

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hostos/hostos/rootfs/tree"
)

// ErrNoSpace is returned when a tree or an image does not fit the partition.
var ErrNoSpace = errors.New("no space")

// Options are the mkfs.ext4 settings of a filesystem.
type Options struct {
	// Label is the volume name, at most 16 bytes.
	Label string
	// BlockSize in bytes; 0 means 4096.
	BlockSize int
	// InodeRatio is bytes per inode (-i); 0 means mke2fs' default (16384).
	InodeRatio int
	// Inodes is the inode count (-N); 0 derives it from the ratio.
	Inodes int
	// UUID and HashSeed of the filesystem; zero lets mkfs pick, or derives them from Label and Time when Time is set.
	UUID, HashSeed uuid.UUID
	// Time, when set (SOURCE_DATE_EPOCH), is the filesystem's creation and write time and every inode's
	// ctime, atime and crtime, so that builds from the same tree are byte-identical.
	Time time.Time
	// ExtraFeatures is passed to -O.
	ExtraFeatures string
}

const (
	defaultBlockSize  = 4096
	defaultInodeRatio = 16384
	inodeSize         = 256
	maxLabel          = 16
)

func (o Options) blockSize() int64 {
	if o.BlockSize == 0 {
		return defaultBlockSize
	}
	return int64(o.BlockSize)
}

func (o Options) inodeRatio() int64 {
	if o.InodeRatio == 0 {
		return defaultInodeRatio
	}
	return int64(o.InodeRatio)
}

// check rejects contradictory or invalid options.
func (o Options) check() error {
	bs := o.blockSize()
	if bs < 1024 || bs > 65536 || bs&(bs-1) != 0 {
		return fmt.Errorf("ext4 options: block size %d: not a power of two from 1024 to 65536", o.BlockSize)
	}
	if len(o.Label) > maxLabel {
		return fmt.Errorf("ext4 options: label %q: longer than %d bytes", o.Label, maxLabel)
	}
	if o.InodeRatio != 0 && (o.InodeRatio < 1024 || o.InodeRatio > 67108864) {
		return fmt.Errorf("ext4 options: inode ratio %d: out of range 1024 to 67108864", o.InodeRatio)
	}
	if o.Inodes < 0 {
		return fmt.Errorf("ext4 options: inode count %d: negative", o.Inodes)
	}
	if o.InodeRatio != 0 && o.Inodes != 0 {
		return errors.New("ext4 options: both an inode ratio and an inode count")
	}
	if strings.ContainsAny(o.ExtraFeatures, " \t\n") {
		return fmt.Errorf("ext4 options: features %q: use commas, not spaces", o.ExtraFeatures)
	}
	if !o.Time.IsZero() && (o.Time.Unix() <= 0 || o.Time.Unix() > 1<<32-1) {
		return fmt.Errorf("ext4 options: time %s: out of range", o.Time)
	}
	return nil
}

// ids are the UUID and hash seed to use; with Time set and none given they derive from Label and Time.
func (o Options) ids() (uuid.UUID, uuid.UUID) {
	u, h := o.UUID, o.HashSeed
	if o.Time.IsZero() {
		return u, h
	}
	seed := fmt.Sprintf("hostos ext4 %q %d", o.Label, o.Time.Unix())
	if u == uuid.Nil {
		u = uuid.NewSHA1(uuid.NameSpaceOID, []byte(seed+" uuid"))
	}
	if h == uuid.Nil {
		h = uuid.NewSHA1(uuid.NameSpaceOID, []byte(seed+" hash seed"))
	}
	return u, h
}

func checkRange(img string, off, size int64) error {
	if off < 0 || size <= 0 {
		return fmt.Errorf("partition in %s: bad range offset %d size %d", img, off, size)
	}
	if size%1024 != 0 {
		return fmt.Errorf("partition in %s: size %d: not a multiple of 1 KiB", img, size)
	}
	fi, err := os.Stat(img)
	if err != nil {
		return fmt.Errorf("image %s: %w", img, err)
	}
	if fi.Mode().IsRegular() && fi.Size() < off+size {
		return fmt.Errorf("image %s: %d bytes, too small for a partition ending at %d", img, fi.Size(), off+size)
	}
	return nil
}

// Make creates an ext4 filesystem of size bytes at byte offset off of img, from the staged tree root
// (nil makes an empty filesystem), and applies the tree's fixups. It refuses a tree that Estimate says
// does not fit, before writing anything.
func Make(ctx context.Context, img string, off, size int64, o Options, root *tree.Staged) error {
	if err := o.check(); err != nil {
		return err
	}
	if err := checkRange(img, off, size); err != nil {
		return err
	}
	if root != nil {
		if need := Estimate(root, o); need > size {
			return fmt.Errorf("root filesystem %s does not fit in a %d MiB partition: %d MiB short: %w",
				root.Dir, size>>20, (need-size+mib-1)/mib, ErrNoSpace)
		}
	}
	u, h := o.ids()
	ext := "offset=" + strconv.FormatInt(off, 10) + ",root_owner=0:0"
	if h != uuid.Nil {
		ext += ",hash_seed=" + h.String()
	}
	args := []string{"-F", "-q", "-b", strconv.FormatInt(o.blockSize(), 10), "-I", strconv.Itoa(inodeSize), "-E", ext}
	switch {
	case o.Inodes != 0:
		args = append(args, "-N", strconv.Itoa(o.Inodes))
	case o.InodeRatio != 0:
		args = append(args, "-i", strconv.Itoa(o.InodeRatio))
	}
	if o.Label != "" {
		args = append(args, "-L", o.Label)
	}
	if u != uuid.Nil {
		args = append(args, "-U", u.String())
	}
	if o.ExtraFeatures != "" {
		args = append(args, "-O", o.ExtraFeatures)
	}
	if root != nil {
		args = append(args, "-d", root.Dir)
	}
	args = append(args, img, strconv.FormatInt(size/1024, 10)+"k")
	bin, err := e2fsprogs("mkfs.ext4")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = Debugfs{Time: o.Time}.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("mkfs.ext4 on %s at %d: %w", img, off, ctx.Err())
		}
		return fmt.Errorf("mkfs.ext4 on %s at %d: %w: %s", img, off, err, tail(strings.Split(strings.TrimSpace(out.String()), "\n")))
	}
	if root == nil {
		return nil
	}
	cmds, err := fixupCommands(root, o.Time)
	if err != nil {
		return err
	}
	defer os.RemoveAll(cmds.valueDir)
	d := Debugfs{Image: img, Offset: off, Time: o.Time}
	if err := d.Apply(ctx, cmds.lines); err != nil {
		return fmt.Errorf("apply fixups of %s: %w", root.Dir, err)
	}
	return nil
}

type commands struct {
	lines    []string
	valueDir string
}

// fixupCommands turns the tree's fixups into debugfs commands; with t set, every inode's atime and
// ctime are then set to it.
func fixupCommands(root *tree.Staged, t time.Time) (*commands, error) {
	c := &commands{}
	var created []string
	for i, f := range root.Fixups {
		p, err := Quote(f.Path)
		if err != nil {
			return nil, err
		}
		switch f.Op {
		case tree.OpMknod:
			kind := "c"
			switch f.Mode & 0o170000 {
			case 0o060000:
				kind = "b"
			case 0o010000:
				kind = "p"
			}
			// mknod takes a plain name in the current directory.
			dir, base := path.Split(f.Path)
			qdir, err := Quote(dir)
			if err != nil {
				return nil, err
			}
			qbase, err := Quote(base)
			if err != nil {
				return nil, err
			}
			c.lines = append(c.lines, "cd "+qdir)
			if kind == "p" {
				c.lines = append(c.lines, "mknod "+qbase+" p")
			} else {
				c.lines = append(c.lines, fmt.Sprintf("mknod %s %s %d %d", qbase, kind, f.Major, f.Minor))
			}
			c.lines = append(c.lines, "cd /")
			created = append(created, f.Path)
		case tree.OpLink:
			target, err := Quote(f.Target)
			if err != nil {
				return nil, err
			}
			c.lines = append(c.lines, "ln "+target+" "+p, fmt.Sprintf("sif %s links_count %d", target, f.Links))
		case tree.OpOwner:
			c.lines = append(c.lines, fmt.Sprintf("sif %s uid %d", p, f.UID), fmt.Sprintf("sif %s gid %d", p, f.GID))
		case tree.OpMode:
			c.lines = append(c.lines, fmt.Sprintf("sif %s mode 0%o", p, f.Mode))
		case tree.OpXattr:
			if c.valueDir == "" {
				if c.valueDir, err = os.MkdirTemp("", "hostos-xattr-*"); err != nil {
					return nil, fmt.Errorf("xattr values: %w", err)
				}
			}
			file := filepath.Join(c.valueDir, strconv.Itoa(i))
			if err := os.WriteFile(file, f.Value, 0o600); err != nil {
				os.RemoveAll(c.valueDir)
				return nil, fmt.Errorf("xattr values: %w", err)
			}
			name, err := Quote(f.Name)
			if err != nil {
				return nil, err
			}
			qf, err := Quote(file)
			if err != nil {
				return nil, err
			}
			c.lines = append(c.lines, "ea_set -f "+qf+" "+p+" "+name)
		case tree.OpMtime:
			c.lines = append(c.lines, fmt.Sprintf("sif %s mtime @%d", p, f.Time.Unix()))
		default:
			return nil, fmt.Errorf("fixup of %s: unknown operation %s", f.Path, f.Op)
		}
	}
	if t.IsZero() {
		return c, nil
	}
	stamp := "@" + strconv.FormatInt(t.Unix(), 10)
	stampAll := func(p string) error {
		q, err := Quote(p)
		if err != nil {
			return err
		}
		c.lines = append(c.lines, "sif "+q+" atime "+stamp, "sif "+q+" ctime "+stamp)
		return nil
	}
	err := filepath.WalkDir(root.Dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root.Dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return stampAll("/")
		}
		return stampAll("/" + filepath.ToSlash(rel))
	})
	for _, p := range created {
		if err == nil {
			err = stampAll(p)
		}
	}
	if err != nil {
		os.RemoveAll(c.valueDir)
		return nil, fmt.Errorf("timestamps of %s: %w", root.Dir, err)
	}
	return c, nil
}
