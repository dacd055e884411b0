// Package fat creates and fills FAT16/FAT32 file systems inside image files with mkfs.vfat and mtools,
// and reads and updates FAT12/16/32 file systems in pure Go, crash-safely.
package fat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// Options describe the file system Make creates.
type Options struct {
	// Bits is the FAT width: 16 or 32.
	Bits int
	// Label is the volume label: at most 11 ASCII characters, for example "resin-boot"; "" for none.
	Label string
	// VolumeID is the volume serial number; 0 lets mkfs.vfat choose (0x1234abcd when Time is set).
	VolumeID uint32
	// Time, when set, makes the result reproducible: the label entry gets mkfs.fat's fixed timestamp and
	// timestamps written later by Copy come from the time passed there. Zero means now.
	Time time.Time
}

// File is a file to copy into a FAT file system, from a host file or from memory.
type File struct {
	// Dst is the absolute path inside the file system, for example "/EFI/BOOT/grubenv".
	Dst string
	// Src is a host file to copy; when empty, Data is the content (nil Data gives an empty file).
	Src  string
	Data []byte
}

// check validates the destination and returns its path components.
func (f File) check() ([]string, error) {
	if f.Src != "" && f.Data != nil {
		return nil, fmt.Errorf("boot file %s: both a source file and data", f.Dst)
	}
	if !strings.HasPrefix(f.Dst, "/") {
		return nil, fmt.Errorf("boot file %q: destination is not an absolute path", f.Dst)
	}
	parts := strings.Split(f.Dst[1:], "/")
	if len(parts)-1 > MaxDepth {
		return nil, fmt.Errorf("boot file %q: directories nested deeper than %d", f.Dst, MaxDepth)
	}
	for _, p := range parts {
		if err := checkName(p); err != nil {
			return nil, fmt.Errorf("boot file %q: %w", f.Dst, err)
		}
	}
	return parts, nil
}

// checkName accepts a printable ASCII name VFAT can store.
func checkName(p string) error {
	switch {
	case p == "" || p == "." || p == "..":
		return fmt.Errorf("path component %q", p)
	case strings.HasSuffix(p, ".") || strings.HasSuffix(p, " "):
		return fmt.Errorf("name %q ends with a dot or space", p)
	case len(utf16.Encode([]rune(p))) > 255:
		return fmt.Errorf("name %q longer than 255 characters", p)
	}
	for _, c := range p {
		if c > 0x7e {
			return fmt.Errorf("name %q is not ASCII: mtools would store a short non-ASCII name in code page 850 without a long name", p)
		}
		if c < ' ' || c == 0x7f || strings.ContainsRune(`"*/:<>?\|`, c) {
			return fmt.Errorf("name %q holds %q, which fat cannot store", p, c)
		}
	}
	return nil
}

// Make creates a FAT file system of size bytes at byte offset off of the image file img, which must
// already be at least off+size bytes long. The range is zeroed first, so equal inputs give equal bytes.
func Make(ctx context.Context, img string, off, size int64, o Options) error {
	if off < 0 || off%SectorSize != 0 {
		return fmt.Errorf("fat file system offset %d: not a multiple of %d", off, SectorSize)
	}
	if err := checkLabel(o.Label); err != nil {
		return err
	}
	l, err := PlanLayout(o.Bits, size)
	if err != nil {
		return err
	}
	if !o.Time.IsZero() {
		if err := checkTime(o.Time); err != nil {
			return err
		}
	}
	fi, err := os.Stat(img)
	if err != nil {
		return fmt.Errorf("fat image: %w", err)
	}
	end := fi.Size()
	if fi.Mode()&os.ModeDevice != 0 {
		d, err := os.Open(img)
		if err != nil {
			return fmt.Errorf("fat image: %w", err)
		}
		end, err = d.Seek(0, io.SeekEnd)
		d.Close()
		if err != nil {
			return fmt.Errorf("fat image %s: size: %w", img, err)
		}
	}
	if end < off+size {
		return fmt.Errorf("fat image %s: %d bytes, file system needs %d at offset %d", img, end, size, off)
	}
	// mkfs.fat adds the sectors after the last whole KiB of the device to the file system; make sure that
	// cannot push it past the partition.
	if orphan := (end - off) % 1024 / SectorSize; orphan > 0 {
		n := size/SectorSize + orphan
		if n/int64(l.sectorsPerTrack)*int64(l.sectorsPerTrack)*SectorSize > size {
			return fmt.Errorf("fat image %s: mkfs.fat would grow the file system past the partition because the image does not end on a KiB boundary after the offset", img)
		}
	}
	if err := zeroRange(img, off, size); err != nil {
		return err
	}
	m := mkfsFAT{
		offset:            off,
		layout:            l,
		label:             o.Label,
		volumeID:          o.VolumeID,
		setVolumeID:       o.VolumeID != 0,
		invariant:         !o.Time.IsZero(),
		hiddenSectors:     off / SectorSize,
		sizeKiB:           size / 1024,
		sectorsPerCluster: l.ClusterSize / SectorSize,
	}
	if err := m.run(ctx, img, o.Time); err != nil {
		return fmt.Errorf("fat file system in %s: %w", img, err)
	}
	// Check mkfs.fat made the planned layout: Space and MinSize rely on it.
	f, err := os.Open(img)
	if err != nil {
		return fmt.Errorf("fat image: %w", err)
	}
	defer f.Close()
	fsys, err := Open(f, off, size)
	if err != nil {
		return fmt.Errorf("fat file system just made in %s: %w", img, err)
	}
	if fsys.Bits() != l.Bits || fsys.Clusters() != l.Clusters || fsys.ClusterSize() != l.ClusterSize {
		return fmt.Errorf("fat file system just made in %s: fat%d with %d clusters of %d bytes, planned fat%d with %d of %d",
			img, fsys.Bits(), fsys.Clusters(), fsys.ClusterSize(), l.Bits, l.Clusters, l.ClusterSize)
	}
	return nil
}

func checkLabel(l string) error {
	if len(l) > 11 {
		return fmt.Errorf("fat label %q: longer than 11 characters", l)
	}
	if strings.HasPrefix(l, " ") {
		return fmt.Errorf("fat label %q: starts with a space", l)
	}
	for _, c := range l {
		if c < ' ' || c > '~' || strings.ContainsRune(`*?.,;:/\|+=<>[]"`, c) {
			return fmt.Errorf("fat label %q: character %q not allowed", l, c)
		}
	}
	return nil
}

func checkTime(t time.Time) error {
	if y := t.UTC().Year(); y < 1980 || y > 2107 {
		return fmt.Errorf("fat timestamp %s: outside 1980-2107", t.UTC().Format(time.RFC3339))
	}
	return nil
}

// zeroRange clears bytes [off, off+size) of img: a punched hole where the file system allows, written zeros otherwise.
func zeroRange(img string, off, size int64) error {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("fat image: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("fat image: %w", err)
	}
	if fi.Mode().IsRegular() {
		if punchHole(f, off, size) == nil {
			return nil
		}
	}
	zero := make([]byte, 1<<20)
	for done := int64(0); done < size; {
		n := min(int64(len(zero)), size-done)
		if _, err := f.WriteAt(zero[:n], off+done); err != nil {
			return fmt.Errorf("fat image %s: zeroing the partition: %w", img, err)
		}
		done += n
	}
	return nil
}

// Copy copies files into the FAT file system at byte offset off of img, creating parent directories and
// overwriting existing files. t, when set, stamps every file and new directory (reproducible output);
// zero means now. mcopy runs once per destination directory.
func Copy(ctx context.Context, img string, off int64, files []File, t time.Time) error {
	if len(files) == 0 {
		return nil
	}
	if !t.IsZero() {
		if err := checkTime(t); err != nil {
			return err
		}
	}
	type group struct {
		dir   string // as first spelled by the caller
		files []File
		names []string
	}
	groups := map[string]*group{} // by lower-case directory
	dirs := map[string]string{}   // lower-case directory -> spelling, every ancestor of a file
	dsts := map[string]bool{}
	for _, f := range files {
		parts, err := f.check()
		if err != nil {
			return err
		}
		key := strings.ToLower(f.Dst)
		if dsts[key] {
			return fmt.Errorf("boot file %s: listed twice", f.Dst)
		}
		dsts[key] = true
		dir := "/" + path.Join(parts[:len(parts)-1]...)
		for i := 1; i < len(parts); i++ {
			d := "/" + path.Join(parts[:i]...)
			if _, ok := dirs[strings.ToLower(d)]; !ok {
				dirs[strings.ToLower(d)] = d
			}
		}
		g := groups[strings.ToLower(dir)]
		if g == nil {
			g = &group{dir: dir}
			groups[strings.ToLower(dir)] = g
		}
		g.files = append(g.files, f)
		g.names = append(g.names, parts[len(parts)-1])
	}
	for key := range dsts {
		if _, ok := dirs[key]; ok {
			return fmt.Errorf("boot file %s: also a directory of another file", key)
		}
	}
	missing, err := missingDirs(img, off, dirs)
	if err != nil {
		return err
	}
	mt := newMtools(img, off, t)
	if err := mt.mmd(ctx, missing); err != nil {
		return fmt.Errorf("fat directories in %s: %w", img, err)
	}
	stage, err := os.MkdirTemp("", "hostos-fat-")
	if err != nil {
		return fmt.Errorf("fat staging directory: %w", err)
	}
	defer os.RemoveAll(stage)
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		g := groups[k]
		sd := filepath.Join(stage, strconv.Itoa(i))
		if err := os.Mkdir(sd, 0o700); err != nil {
			return fmt.Errorf("fat staging directory: %w", err)
		}
		order := make([]int, len(g.files))
		for j := range order {
			order[j] = j
		}
		slices.SortFunc(order, func(a, b int) int { return strings.Compare(g.names[a], g.names[b]) })
		var srcs []string
		for _, j := range order {
			p, err := stageFile(sd, g.names[j], g.files[j])
			if err != nil {
				return err
			}
			srcs = append(srcs, p)
		}
		if err := mt.mcopy(ctx, srcs, g.dir); err != nil {
			return fmt.Errorf("fat copy into %s:%s: %w", img, g.dir, err)
		}
	}
	return nil
}

// stageFile gives a file the destination's base name in dir: a symbolic link to a host file, or the data.
func stageFile(dir, name string, f File) (string, error) {
	p := filepath.Join(dir, name)
	if f.Src != "" {
		src, err := filepath.Abs(f.Src)
		if err != nil {
			return "", fmt.Errorf("boot file %s: %w", f.Dst, err)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return "", fmt.Errorf("boot file %s: %w", f.Dst, err)
		}
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("boot file %s: source %s is not a regular file", f.Dst, f.Src)
		}
		if err := os.Symlink(src, p); err != nil {
			return "", fmt.Errorf("boot file %s: %w", f.Dst, err)
		}
		return p, nil
	}
	if err := os.WriteFile(p, f.Data, 0o600); err != nil {
		return "", fmt.Errorf("boot file %s: %w", f.Dst, err)
	}
	return p, nil
}

// missingDirs lists, parents first, the directories that do not exist yet in the file system.
func missingDirs(img string, off int64, dirs map[string]string) ([]string, error) {
	if len(dirs) == 0 {
		return nil, nil
	}
	f, err := os.Open(img)
	if err != nil {
		return nil, fmt.Errorf("fat image: %w", err)
	}
	defer f.Close()
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("fat image %s: size: %w", img, err)
	}
	fsys, err := Open(f, off, end-off)
	if err != nil {
		return nil, fmt.Errorf("fat file system in %s: %w", img, err)
	}
	var all []string
	for _, d := range dirs {
		all = append(all, d)
	}
	// Parents sort before their children.
	slices.SortFunc(all, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	var missing []string
	for _, d := range all {
		e, err := fsys.Stat(d)
		switch {
		case errors.Is(err, os.ErrNotExist):
			missing = append(missing, d)
		case err != nil:
			return nil, fmt.Errorf("fat file system in %s: %w", img, err)
		case !e.IsDir:
			return nil, fmt.Errorf("fat file system in %s: %s is a file, not a directory", img, d)
		}
	}
	return missing, nil
}

// Fsck runs fsck.vfat -n on the file system of size bytes at offset off of img. fsck.vfat takes no offset,
// so the range is first copied, sparsely, to a temporary file. The error carries the end of fsck's report.
func Fsck(ctx context.Context, img string, off, size int64) error {
	src, err := os.Open(img)
	if err != nil {
		return fmt.Errorf("fat image: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp("", "hostos-fat-check-")
	if err != nil {
		return fmt.Errorf("fat check copy: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := sparseCopy(tmp, src, off, size); err != nil {
		return fmt.Errorf("fat check copy of %s: %w", img, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fat check copy: %w", err)
	}
	if err := (fsckFAT{}).check(ctx, tmp.Name()); err != nil {
		return fmt.Errorf("fat file system at offset %d of %s: %w", off, img, err)
	}
	return nil
}

// sparseCopy copies size bytes at off of src to the start of dst, leaving all-zero blocks as holes.
func sparseCopy(dst *os.File, src io.ReaderAt, off, size int64) error {
	buf := make([]byte, 64<<10)
	for done := int64(0); done < size; {
		n := min(int64(len(buf)), size-done)
		b := buf[:n]
		if _, err := src.ReadAt(b, off+done); err != nil {
			return err
		}
		if !allZero(b) {
			if _, err := dst.WriteAt(b, done); err != nil {
				return err
			}
		}
		done += n
	}
	return dst.Truncate(size)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
