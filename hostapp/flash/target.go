package flash

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hostos/hostos/hostapp/device"
)

// system names where the facts about block devices are read: sysfs and the mount table. Tests point them
// at fake trees.
type system struct {
	sysRoot   string // normally /sys
	mountinfo string // normally /proc/self/mountinfo
}

// mountEntry is one line of mountinfo, the fields the safety checks use.
type mountEntry struct {
	dev    string // "major:minor" of the mounted filesystem
	point  string // mount point
	source string // mount source, e.g. /dev/sdb1
}

// parseMountinfo decodes /proc/self/mountinfo content; malformed lines are skipped.
func parseMountinfo(data []byte) []mountEntry {
	var out []mountEntry
	for _, line := range strings.Split(string(data), "\n") {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			continue
		}
		out = append(out, mountEntry{dev: f[2], point: device.UnescapeMountField(f[4]), source: device.UnescapeMountField(f[sep+2])})
	}
	return out
}

// blockDisk is a whole disk as sysfs describes it: its name, its device number and its partitions'.
type blockDisk struct {
	name      string
	dir       string            // its sysfs directory
	devs      map[string]string // "major:minor" -> node name, the disk's and each partition's
	removable bool
}

// findDisk resolves the block device numbered major:minor to its whole disk in sysfs: a partition's
// parent directory, else the device itself.
func findDisk(sys system, major, minor uint32) (*blockDisk, error) {
	dev := fmt.Sprintf("%d:%d", major, minor)
	link := filepath.Join(sys.sysRoot, "dev", "block", dev)
	dir, err := filepath.EvalSymlinks(link)
	if err != nil {
		return nil, fmt.Errorf("block device %s in sysfs: %w", dev, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		dir = filepath.Dir(dir)
	}
	d := &blockDisk{name: filepath.Base(dir), dir: dir, devs: map[string]string{}}
	if v, err := readAttr(dir, "dev"); err == nil {
		d.devs[v] = d.name
	}
	if v, err := readAttr(dir, "removable"); err == nil {
		d.removable = v == "1"
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("block device %s in sysfs: %w", dev, err)
	}
	for _, e := range ents {
		sub := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(sub, "partition")); err != nil {
			continue
		}
		if v, err := readAttr(sub, "dev"); err == nil {
			d.devs[v] = e.Name()
		}
	}
	return d, nil
}

func readAttr(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	return strings.TrimSpace(string(b)), err
}

// Refusals of a target device, for callers that branch (the CLI suggests --force).
var (
	ErrMounted   = errors.New("mounted")
	ErrSystem    = errors.New("holds the running system")
	ErrFixedDisk = errors.New("not removable")
	// ErrUnchecked means the device could not be checked at all: the checks read Linux's sysfs and mount
	// table, so on other systems every device needs WithForce.
	ErrUnchecked = errors.New("cannot be checked on this system")
)

// checkDevice refuses the block device path (numbered major:minor) when the disk it is on, or one of its
// partitions, is mounted or held by another device (device-mapper, RAID), when it holds the running
// system's root filesystem, or when it is not removable. The order is that of the harm: a mounted disk first.
func checkDevice(sys system, path string, major, minor uint32) error {
	d, err := findDisk(sys, major, minor)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(sys.mountinfo)
	if err != nil {
		return fmt.Errorf("mount table: %w", err)
	}
	mounts := parseMountinfo(data)
	for _, m := range mounts {
		if m.point == "/" {
			if part, ok := d.devs[m.dev]; ok {
				return fmt.Errorf("device %s: %w: /dev/%s is its root filesystem", path, ErrSystem, part)
			}
		}
	}
	for _, m := range mounts {
		part, ok := d.devs[m.dev]
		if !ok {
			for _, name := range d.devs {
				if m.source == "/dev/"+name {
					part, ok = name, true
				}
			}
		}
		if ok {
			return fmt.Errorf("device %s: %w: /dev/%s at %s", path, ErrMounted, part, m.point)
		}
	}
	for _, name := range sortedNames(d) {
		dir := d.dir
		if name != d.name {
			dir = filepath.Join(d.dir, name)
		}
		if hs, _ := os.ReadDir(filepath.Join(dir, "holders")); len(hs) > 0 {
			return fmt.Errorf("device %s: %w: /dev/%s is held by %s", path, ErrMounted, name, hs[0].Name())
		}
	}
	if !d.removable {
		return fmt.Errorf("device %s: %w (sysfs %s/removable is 0)", path, ErrFixedDisk, d.name)
	}
	return nil
}

func sortedNames(d *blockDisk) []string {
	names := slices.Collect(maps.Values(d.devs))
	slices.Sort(names) // deterministic messages
	return names
}
