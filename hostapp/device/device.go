// Package device describes the running device: which root filesystem slot is active and where the partitions
// are.
//
// It finds partitions itself rather than through u-root's pkg/mount/block (whose kmodule and mount packages
// the QEMU test guest does use): Scan takes the sysfs and /dev roots as arguments, so it is tested on fake
// trees as well as on real disks; it reads labels through rootfs/probe, which prefers a FAT's root-directory
// volume label as balena's tools do; and Active cross-checks root= against the mount table. u-root's block
// package reads the running system's /sys/class/block and probes with its own readers.
package device

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/rootfs/probe"
)

// Root is a root filesystem slot on the live device.
type Root struct {
	Device string // device node, e.g. /dev/mmcblk0p2
	Label  string // filesystem label as found, e.g. resin-rootA
	Slot   string // "A" or "B"
}

// Partition is a block device partition as Scan finds it. Values Scan could not learn are empty.
type Partition struct {
	Device   string // device node under the dev root, e.g. /dev/mmcblk0p2
	Disk     string // node of the whole disk, e.g. /dev/mmcblk0
	Number   int    // partition number as the kernel gives it
	Label    string // filesystem label
	UUID     string // filesystem UUID: ext "0a1b...-..." (lowercase), FAT "ABCD-1234"
	PartUUID string // GPT partition GUID or msdos "<disk signature>-<number>", lowercase hex, as root=PARTUUID= uses
	Dev      string // kernel device number "major:minor", e.g. "179:2"
}

// slotLabels are the filesystem labels of each root slot, old and new spelling.
var slotLabels = map[string][]string{
	"A": partition.RootA.Labels(),
	"B": partition.RootB.Labels(),
}

// ParseCmdline returns the value of the last root= parameter of a kernel command line, as the kernel uses
// it: double quotes are removed and parameters after "--" belong to init.
func ParseCmdline(cmdline string) (root string, ok bool) {
	for _, p := range cmdlineParams(cmdline) {
		if p == "--" {
			break
		}
		if v, found := strings.CutPrefix(p, "root="); found {
			root, ok = v, v != ""
		}
	}
	return root, ok
}

// cmdlineParams splits a command line at blanks outside double quotes and drops the quotes. It works on bytes,
// as the kernel does.
func cmdlineParams(s string) []string {
	var params []string
	var cur []byte
	quoted, have := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted, have = !quoted, true
		case !quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			if have {
				params = append(params, string(cur))
				cur, have = cur[:0], false
			}
		default:
			cur = append(cur, c)
			have = true
		}
	}
	if have {
		params = append(params, string(cur))
	}
	return params
}

// mount is one line of /proc/self/mountinfo, the fields hostos uses.
type mount struct {
	dev    string // "major:minor"
	point  string
	source string
}

// ParseMountinfo returns the source of the mount at mountpoint in /proc/self/mountinfo content. Of several
// mounts at the same point the last, the one on top, wins.
func ParseMountinfo(data []byte, mountpoint string) (source string, ok bool) {
	m, ok := findMount(data, mountpoint)
	return m.source, ok
}

func findMount(data []byte, mountpoint string) (mount, bool) {
	var found mount
	ok := false
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
		if UnescapeMountField(f[4]) == mountpoint {
			found = mount{dev: f[2], point: mountpoint, source: UnescapeMountField(f[sep+2])}
			ok = true
		}
	}
	return found, ok
}

// UnescapeMountField undoes the kernel's \ooo escaping of blanks, newlines and backslashes in mountinfo.
func UnescapeMountField(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Find returns the partition whose filesystem label is one of labels, compared ignoring case (old images
// spell the boot label RESIN-BOOT). Finding none wraps probe.ErrNotFound. Two partitions carrying the
// labels, as when a second disk with balenaOS is attached, is an error naming both: balenaOS finds its
// partitions by label, so the device is ambiguous until one goes.
func Find(parts []Partition, labels ...string) (Partition, error) {
	if len(labels) == 0 {
		return Partition{}, errors.New("find partition: no label given")
	}
	var found []Partition
	for _, p := range parts {
		for _, l := range labels {
			if l != "" && strings.EqualFold(p.Label, l) {
				found = append(found, p)
				break
			}
		}
	}
	what := "label " + strconv.Quote(labels[0])
	if len(labels) > 1 {
		q := make([]string, len(labels))
		for i, l := range labels {
			q[i] = strconv.Quote(l)
		}
		what = "labels " + strings.Join(q, ", ")
	}
	switch len(found) {
	case 0:
		return Partition{}, fmt.Errorf("find partition with %s: %w", what, probe.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return Partition{}, fmt.Errorf("find partition with %s: %s all carry it (a second disk with balenaOS?)", what, describe(found))
}

// describe lists partitions as "/dev/sda2 (resin-rootA), /dev/sdb2 (resin-rootA)".
func describe(ps []Partition) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Device
		if p.Label != "" {
			s[i] += " (" + p.Label + ")"
		}
	}
	if len(s) == 2 {
		return s[0] + " and " + s[1]
	}
	return strings.Join(s, ", ")
}

// same reports whether two partitions are one device: the same node or the same device number.
func same(a, b Partition) bool {
	return a.Device == b.Device || (a.Dev != "" && a.Dev == b.Dev)
}

// slotOf returns the slot a root label names.
func slotOf(label string) (string, bool) {
	for slot, labels := range slotLabels {
		for _, l := range labels {
			if strings.EqualFold(label, l) {
				return slot, true
			}
		}
	}
	return "", false
}

// Active resolves the running root and the inactive one. The kernel command line's root= (LABEL=, UUID=,
// PARTUUID=, /dev/..., major:minor) must name the same partition as the source of the "/" mount in mountinfo
// (matched by device number first, so a "/dev/root" source works); its label gives the slot (resin-rootA and
// balena-rootA are "A"). The inactive root is the single partition carrying the other slot's label. Active
// refuses when command line and mount disagree, when a root label is on two partitions, and when active and
// inactive resolve to the same device.
func Active(cmdline string, mountinfo []byte, parts []Partition) (active, inactive Root, err error) {
	spec, ok := ParseCmdline(cmdline)
	if !ok {
		return Root{}, Root{}, errors.New("active root: kernel command line has no root=")
	}
	booted, err := resolve(spec, parts)
	if err != nil {
		return Root{}, Root{}, fmt.Errorf("active root: kernel command line root=%s: %w", spec, err)
	}
	m, ok := findMount(mountinfo, "/")
	if !ok {
		return Root{}, Root{}, errors.New("active root: no mount at / in mountinfo")
	}
	mounted, err := mountedFrom(m, parts)
	if err != nil {
		return Root{}, Root{}, fmt.Errorf("active root: %w", err)
	}
	if !same(booted, mounted) {
		return Root{}, Root{}, fmt.Errorf("active root: kernel command line root=%s is %s but / is mounted from %s",
			spec, describe([]Partition{booted}), describe([]Partition{mounted}))
	}
	slot, ok := slotOf(booted.Label)
	if !ok {
		return Root{}, Root{}, fmt.Errorf("active root: %s carries label %q, not a root label (resin-rootA, balena-rootB, ...)", booted.Device, booted.Label)
	}
	if p, err := Find(parts, slotLabels[slot]...); err != nil {
		return Root{}, Root{}, fmt.Errorf("active root: %w", err)
	} else if !same(p, booted) {
		return Root{}, Root{}, fmt.Errorf("active root: booted from %s but the root %s label is on %s", booted.Device, slot, p.Device)
	}
	other := map[string]string{"A": "B", "B": "A"}[slot]
	p, err := Find(parts, slotLabels[other]...)
	if err != nil {
		return Root{}, Root{}, fmt.Errorf("inactive root: %w", err)
	}
	if same(p, booted) {
		return Root{}, Root{}, fmt.Errorf("inactive root: %s is the active root too (device %s)", describe([]Partition{p}), p.Dev)
	}
	return Root{Device: booted.Device, Label: booted.Label, Slot: slot}, Root{Device: p.Device, Label: p.Label, Slot: other}, nil
}

// mountedFrom finds the partition a mount comes from: by device number, else by its source.
func mountedFrom(m mount, parts []Partition) (Partition, error) {
	for _, p := range parts {
		if p.Dev != "" && p.Dev == m.dev {
			return p, nil
		}
	}
	if m.source == "/dev/root" || !strings.HasPrefix(m.source, "/dev/") {
		return Partition{}, fmt.Errorf("/ is mounted from %s (device %s), which is no partition found", m.source, m.dev)
	}
	p, err := resolve(m.source, parts)
	if err != nil {
		return Partition{}, fmt.Errorf("/ is mounted from %s: %w", m.source, err)
	}
	return p, nil
}

// resolve finds the one partition a root= value or device path names.
func resolve(spec string, parts []Partition) (Partition, error) {
	match, err := matcher(spec)
	if err != nil {
		return Partition{}, err
	}
	var found []Partition
	for _, p := range parts {
		if match(p) {
			found = append(found, p)
		}
	}
	switch {
	case len(found) == 0:
		return Partition{}, fmt.Errorf("no partition matches: %w", probe.ErrNotFound)
	case len(found) > 1:
		for _, p := range found[1:] {
			if !same(p, found[0]) {
				return Partition{}, fmt.Errorf("ambiguous: %s all match", describe(found))
			}
		}
	}
	return found[0], nil
}

// matcher turns a root= value into a partition predicate.
func matcher(spec string) (func(Partition) bool, error) {
	field := func(get func(Partition) string, want string) func(Partition) bool {
		return func(p Partition) bool { v := get(p); return v != "" && strings.EqualFold(v, want) }
	}
	label := func(p Partition) string { return p.Label }
	fsUUID := func(p Partition) string { return p.UUID }
	partUUID := func(p Partition) string { return p.PartUUID }
	if k, v, ok := strings.Cut(spec, "="); ok {
		switch k {
		case "LABEL":
			return field(label, v), nil
		case "UUID":
			return field(fsUUID, v), nil
		case "PARTUUID":
			if strings.Contains(v, "/") {
				return nil, errors.New("PARTUUID= with /PARTNROFF= is not supported")
			}
			return field(partUUID, v), nil
		}
		return nil, fmt.Errorf("%s= is not supported (LABEL=, UUID=, PARTUUID=, /dev/...)", k)
	}
	if name, ok := strings.CutPrefix(spec, "/dev/"); ok {
		if dir, v, ok := strings.Cut(name, "/"); ok && dir == "disk" {
			kind, v, _ := strings.Cut(v, "/")
			switch kind {
			case "by-label":
				return field(label, udevUnescape(v)), nil
			case "by-uuid":
				return field(fsUUID, udevUnescape(v)), nil
			case "by-partuuid":
				return field(partUUID, udevUnescape(v)), nil
			}
			return nil, fmt.Errorf("%s is not supported", spec)
		}
		if name == "root" || name == "" {
			return nil, fmt.Errorf("%s names no partition", spec)
		}
		return func(p Partition) bool { return p.Device == spec || strings.HasSuffix(p.Device, "/"+name) }, nil
	}
	if dev, ok := decodeDevNumber(spec); ok {
		return func(p Partition) bool { return p.Dev == dev }, nil
	}
	return nil, fmt.Errorf("%q is not supported (LABEL=, UUID=, PARTUUID=, /dev/..., major:minor)", spec)
}

// decodeDevNumber reads the kernel's numeric root= forms, "major:minor" and a hex device number, as
// "major:minor".
func decodeDevNumber(s string) (string, bool) {
	if maj, min, ok := strings.Cut(s, ":"); ok {
		a, err1 := strconv.ParseUint(maj, 10, 32)
		b, err2 := strconv.ParseUint(min, 10, 32)
		if err1 != nil || err2 != nil {
			return "", false
		}
		return fmt.Sprintf("%d:%d", a, b), true
	}
	n, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return "", false
	}
	// The kernel's new_decode_dev: minor bits 0-7 and 20-31, major bits 8-19.
	return fmt.Sprintf("%d:%d", (n&0xfff00)>>8, (n&0xff)|((n>>12)&0xfff00)), true
}

// udevUnescape decodes the \xNN escapes udev puts in /dev/disk/by-* names.
func udevUnescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if i+4 <= len(s) && s[i] == '\\' && s[i+1] == 'x' {
			if n, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
