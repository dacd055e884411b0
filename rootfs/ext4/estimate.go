package ext4

import "github.com/hostos/hostos/rootfs/tree"

const mib = 1 << 20

// reservedInodes are the inodes below ext4's first usable one, plus lost+found.
const reservedInodes = 12

// journalBlocks is mke2fs' default journal size for a filesystem of the given block count.
func journalBlocks(blocks int64) int64 {
	switch {
	case blocks < 2048:
		return 0
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	case blocks < 16384*1024:
		return 65536
	case blocks < 32768*1024:
		return 131072
	}
	return 262144
}

// Estimate is the partition size in bytes (a whole number of MiB) the tree needs: its data blocks and
// directories, an inode table holding all its entries, the journal, group metadata and 5% slack.
func Estimate(s *tree.Staged, o Options) int64 {
	bs := o.blockSize()
	data := s.DataBytes(int(bs)) + 4*bs // lost+found
	wantInodes := int64(s.Entries) + reservedInodes
	fits := func(p int64) bool {
		blocks := p / bs
		groups := (blocks + 8*bs - 1) / (8 * bs)
		inodes := int64(o.Inodes)
		if inodes == 0 {
			inodes = p / o.inodeRatio()
		}
		if inodes < wantInodes {
			return false
		}
		// Two bitmaps per group, descriptors, and the reserve kept for growing the descriptor table.
		meta := groups*2*bs + (groups*64/bs+1)*bs + (blocks/1024+1)*64/bs*bs*2
		used := data + inodes*inodeSize + journalBlocks(blocks)*bs + meta
		return used+used/20 <= p
	}
	lo, hi := int64(1), int64(1)
	for !fits(hi * mib) {
		lo = hi
		hi *= 2
		if hi > 1<<24 {
			return hi * mib
		}
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if fits(mid * mib) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return hi * mib
}
