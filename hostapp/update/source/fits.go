package source

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"path"
	"strings"

	"github.com/hostos/hostos/rootfs/tree"
)

// reservedInodes are ext4's inodes below the first usable one plus lost+found.
const reservedInodes = 12

// checkFits reads the archive src of the given kind as Stage would (decompressed, an image flattened) without writing
// anything, and refuses it with ErrTooLarge as soon as its entries outnumber the inodes of a slot of
// size bytes, or its files' data blocks outgrow the slot. Both are lower bounds of what the filesystem
// needs (a name given twice counts once; directories' own blocks and metadata are left to the exact
// estimate after staging), so nothing that fits is refused; what does not fit fails before staging
// writes a byte, in the time it takes to read the archive.
func checkFits(ctx context.Context, src string, kind tree.Kind, size int64, progress func(string, int64, int64)) error {
	rc, err := tree.Open(src, kind)
	if err != nil {
		return err
	}
	defer rc.Close()
	inodes := size / rootInodeRatio
	// Each name is kept as a 64-bit hash with its data blocks: a collision can only undercount.
	seen := map[uint64]int64{}
	var data int64
	tr := tar.NewReader(&ctxReader{ctx: ctx, r: rc})
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read archive: %w", err)
		}
		if n%4096 == 0 {
			progress("check root filesystem size", int64(n), 0)
		}
		if h.Typeflag == tar.TypeXGlobalHeader || kind != tree.KindTar && tree.Whiteout(h.Name) {
			continue
		}
		name := path.Clean("/" + strings.TrimPrefix(h.Name, "./"))
		f := fnv.New64a()
		f.Write([]byte(name))
		key := f.Sum64()
		var blocks int64
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA {
			blocks = (h.Size + blockSize - 1) / blockSize * blockSize
		}
		old, again := seen[key]
		seen[key] = blocks
		data += blocks - old
		if !again && int64(len(seen))+reservedInodes > inodes {
			return fmt.Errorf("%w: it holds more than %d entries, a slot of %d MiB has %d inodes",
				ErrTooLarge, len(seen), size/mib, inodes)
		}
		if data > size {
			return fmt.Errorf("%w: its files hold at least %d MiB, the slot has %d MiB",
				ErrTooLarge, data/mib, size/mib)
		}
	}
}
