package tree

// Expected counts what a writer will add to a staged tree, so that the fit check can run before it writes.
type Expected struct {
	// Files counts regular files (inodes), Dirs directories, Entries every path including links and nodes.
	Files, Dirs, Entries int
	// Bytes is the sum of the regular file sizes.
	Bytes int64
	// Sizes are the byte sizes that take data blocks, each rounded up to whole blocks: regular files,
	// symlink targets longer than ext4 keeps in the inode, and the entries of each directory.
	Sizes []int64
}

// Expect returns a copy of s that also counts e: Estimate of it sizes a partition for both.
func (s *Staged) Expect(e Expected) *Staged {
	c := *s
	c.Files += e.Files
	c.Dirs += e.Dirs
	c.Entries += e.Entries
	c.Bytes += e.Bytes
	c.usage = append(append([]int64(nil), s.usage...), e.Sizes...)
	c.Fixups = append([]Fixup(nil), s.Fixups...)
	return &c
}

// DirentBytes is what the entry name takes in an ext4 directory; a directory takes 24 bytes for . and ..
// plus its entries.
func DirentBytes(name string) int64 { return direntSize(name) }

// FastSymlinkMax is the longest symlink target ext4 keeps inside the inode, taking no data block.
const FastSymlinkMax = fastSymlinkMax
