package update

import (
	"fmt"
	"os"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/device"
	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/bootfs"
	"github.com/hostos/hostos/rootfs/probe"
)

// DeviceOptions locate the pieces of a running device; empty fields take balenaOS's places.
type DeviceOptions struct {
	BootDir, StateDir string // /mnt/boot, /mnt/state
	SysRoot, DevRoot  string // /sys, /dev
	ProcRoot          string // /proc
	RunRoot           string // /run
	Writable          bool
}

// OpenDevice opens the running device: the active root from the kernel command line cross-checked with
// the mount table, the disk holding both root slots, and the mounted boot and state partitions (never
// written through the raw disk while mounted).
func OpenDevice(o DeviceOptions) (*Target, error) {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.BootDir, "/mnt/boot")
	def(&o.StateDir, "/mnt/state")
	def(&o.SysRoot, "/sys")
	def(&o.DevRoot, "/dev")
	def(&o.ProcRoot, "/proc")
	def(&o.RunRoot, "/run")
	cmdline, err := os.ReadFile(o.ProcRoot + "/cmdline")
	if err != nil {
		return nil, fmt.Errorf("kernel command line: %w", err)
	}
	mountinfo, err := os.ReadFile(o.ProcRoot + "/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("mount table: %w", err)
	}
	parts, err := device.Scan(o.SysRoot, o.DevRoot)
	if err != nil {
		return nil, err
	}
	active, inactive, err := device.Active(string(cmdline), mountinfo, parts)
	if err != nil {
		return nil, err
	}
	var diskPath string
	for _, p := range parts {
		if p.Device == active.Device {
			diskPath = p.Disk
		}
	}
	if diskPath == "" {
		return nil, fmt.Errorf("active root %s: no disk found for it", active.Device)
	}
	d, err := disk.Open(diskPath, o.Writable)
	if err != nil {
		return nil, err
	}
	tg, err := openDeviceDisk(d, active, inactive, o)
	if err != nil {
		d.Close()
		return nil, err
	}
	return tg, nil
}

func openDeviceDisk(d disk.Disk, active, inactive device.Root, o DeviceOptions) (*Target, error) {
	t, err := partition.Read(d, d.Size(), d.SectorSize())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Path(), err)
	}
	tg := &Target{Disk: d, Boot: bootfs.Dir(o.BootDir), State: DirStore(o.StateDir),
		Slots: map[bootenv.Slot]partition.Partition{}, Labels: map[bootenv.Slot]string{}}
	for slot, role := range slotRoles {
		labels := role.Labels()
		p, err := probe.Locate(d, t, labels...)
		if err != nil {
			return nil, fmt.Errorf("root slot %s: %w", slot, err)
		}
		tg.Slots[slot], tg.Labels[slot] = p, p.Label
		if p.Label == "" {
			tg.Labels[slot] = labels[0]
		}
	}
	tg.RunDir = o.RunRoot
	if _, err := os.Stat(o.SysRoot + "/firmware/efi"); err == nil {
		tg.EFI = true
	}
	if active.Slot == inactive.Slot || active.Device == inactive.Device {
		return nil, fmt.Errorf("active and inactive root resolve to the same device %s", active.Device)
	}
	return tg, tg.finish(bootenv.Slot(active.Slot))
}
