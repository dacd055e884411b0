package device

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/uuid"

	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/probe"
)

// Scan lists the partitions the kernel knows under sysRoot (normally "/sys") with their device nodes under
// devRoot (normally "/dev"). Labels and filesystem UUIDs are probed from the partition nodes and PARTUUIDs
// read from the disks' partition tables, so two partitions carrying the same label are both seen (udev's
// /dev/disk/by-* links name only one); where a node cannot be opened, the by-label, by-uuid and by-partuuid
// links under devRoot fill in. A partition whose node opens but cannot be read is an error: its label
// cannot be ruled out as a duplicate.
func Scan(sysRoot, devRoot string) ([]Partition, error) {
	classDir := filepath.Join(sysRoot, "class", "block")
	entries, err := os.ReadDir(classDir)
	if err != nil {
		return nil, fmt.Errorf("scan partitions: %w", err)
	}
	links := readLinks(devRoot)
	tables := map[string]*partition.Table{}
	var parts []Partition
	for _, e := range entries {
		dir := filepath.Join(classDir, e.Name())
		num, err := readAttr(dir, "partition")
		if errors.Is(err, fs.ErrNotExist) {
			continue // a whole disk
		}
		if err != nil {
			return nil, fmt.Errorf("scan partitions: %s: %w", e.Name(), err)
		}
		n, err := strconv.Atoi(num)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("scan partitions: %s: partition number %q", e.Name(), num)
		}
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return nil, fmt.Errorf("scan partitions: %s: %w", e.Name(), err)
		}
		diskDir := filepath.Dir(real)
		p := Partition{
			Device: filepath.Join(devRoot, devName(real)),
			Disk:   filepath.Join(devRoot, devName(diskDir)),
			Number: n,
		}
		p.Dev, _ = readAttr(dir, "dev")
		if err := probeFS(&p); err != nil {
			return nil, fmt.Errorf("scan partitions: %w", err)
		}
		t, ok := tables[p.Disk]
		if !ok {
			t = readTable(p.Disk)
			tables[p.Disk] = t
		}
		p.PartUUID = partUUID(t, n)
		name := filepath.Base(p.Device)
		if p.Label == "" {
			p.Label = links["by-label"][name]
		}
		if p.UUID == "" {
			p.UUID = links["by-uuid"][name]
		}
		if p.PartUUID == "" {
			p.PartUUID = strings.ToLower(links["by-partuuid"][name])
		}
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool {
		if parts[i].Disk != parts[j].Disk {
			return parts[i].Disk < parts[j].Disk
		}
		return parts[i].Number < parts[j].Number
	})
	return parts, nil
}

// readAttr reads a one-line sysfs attribute.
func readAttr(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	return strings.TrimSpace(string(b)), err
}

// devName is the node name of the sysfs block device directory dir: DEVNAME from its uevent, else its
// directory name with '!' for '/', as the kernel spells nested names in sysfs.
func devName(dir string) string {
	if f, err := os.Open(filepath.Join(dir, "uevent")); err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "DEVNAME="); ok && v != "" {
				return v
			}
		}
	}
	return strings.ReplaceAll(filepath.Base(dir), "!", "/")
}

// probeFS fills the label and filesystem UUID from the partition's node. A node that is missing or not
// readable to us is left to the udev links; a failing read is an error.
func probeFS(p *Partition) error {
	d, err := disk.Open(p.Device, false)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENXIO) || errors.Is(err, syscall.ENODEV) {
		return nil // no node, or the device went away since sysfs listed it
	}
	if err != nil {
		return fmt.Errorf("probe %s: %w", p.Device, err)
	}
	defer d.Close()
	fstype, label, err := probe.Filesystem(d, 0, d.Size())
	if err != nil {
		return fmt.Errorf("probe %s: %w", p.Device, err)
	}
	p.Label = label
	if p.UUID, err = fsUUID(d, d.Size(), fstype); err != nil {
		return fmt.Errorf("probe %s: filesystem uuid: %w", p.Device, err)
	}
	return nil
}

// fsUUID reads the filesystem UUID as blkid prints it: ext from the superblock, FAT from the volume serial
// number of an extended boot signature.
func fsUUID(r io.ReaderAt, size int64, fstype string) (string, error) {
	switch fstype {
	case "ext2", "ext3", "ext4":
		b := make([]byte, 16)
		if _, err := r.ReadAt(b, 1024+0x68); err != nil {
			return "", err
		}
		if isZero(b) {
			return "", nil
		}
		u, _ := uuid.FromBytes(b)
		return u.String(), nil
	case "vfat":
		bs := make([]byte, 512)
		if size < int64(len(bs)) {
			return "", nil
		}
		if _, err := r.ReadAt(bs, 0); err != nil {
			return "", err
		}
		var serial uint32
		switch {
		case binary.LittleEndian.Uint16(bs[22:]) == 0 && bs[0x42] == 0x29: // FAT32
			serial = binary.LittleEndian.Uint32(bs[0x43:])
		case binary.LittleEndian.Uint16(bs[22:]) != 0 && bs[0x26] == 0x29: // FAT12/16
			serial = binary.LittleEndian.Uint32(bs[0x27:])
		default:
			return "", nil
		}
		return fmt.Sprintf("%04X-%04X", serial>>16, serial&0xffff), nil
	}
	return "", nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// readTable reads the partition table of a disk node; nil when it cannot be opened or read (the PARTUUIDs
// then come from the by-partuuid links).
func readTable(node string) *partition.Table {
	d, err := disk.Open(node, false)
	if err != nil {
		return nil
	}
	defer d.Close()
	t, err := partition.Read(d, d.Size(), d.SectorSize())
	if err != nil {
		return nil
	}
	return t
}

// partUUID is the PARTUUID the kernel gives partition n: the GPT entry's GUID, or for msdos the disk
// signature and the partition number, "a1b2c3d4-02".
func partUUID(t *partition.Table, n int) string {
	if t == nil {
		return ""
	}
	switch t.Kind {
	case partition.GPT:
		if p, ok := t.Partition(n); ok {
			return p.GUID.String()
		}
	case partition.MSDOS:
		if t.DiskSignature != 0 {
			return fmt.Sprintf("%08x-%02x", t.DiskSignature, n)
		}
	}
	return ""
}

// readLinks maps, for each of devRoot/disk/by-label, by-uuid and by-partuuid, the node name a link points at
// to the (unescaped) link name. Missing directories give empty maps.
func readLinks(devRoot string) map[string]map[string]string {
	links := map[string]map[string]string{}
	for _, kind := range []string{"by-label", "by-uuid", "by-partuuid"} {
		m := map[string]string{}
		links[kind] = m
		dir := filepath.Join(devRoot, "disk", kind)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			target, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			m[filepath.Base(target)] = udevUnescape(e.Name())
		}
	}
	return links
}
