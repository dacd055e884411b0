package update

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/bootfs"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/hostappfs"
	"github.com/hostos/hostos/rootfs/probe"
)

// slotRoles are the layout's roles of the root slots.
var slotRoles = map[bootenv.Slot]partition.Role{bootenv.SlotA: partition.RootA, bootenv.SlotB: partition.RootB}

// Target is a device or a disk image being updated: its disk, where the boot files and breadcrumbs
// live, its bootloader backend and which slot runs.
type Target struct {
	Disk  disk.Disk
	Boot  bootfs.FS
	State StateStore
	Env   bootenv.Backend
	// Slots are the root partitions; Labels their filesystem labels (given to a newly written slot).
	Slots  map[bootenv.Slot]partition.Partition
	Labels map[bootenv.Slot]string
	// Booted is the slot running now (on an image: the one the caller says booted, else the one the
	// bootloader points at).
	Booted     bootenv.Slot
	DeviceType string
	Arch       string
	// EFI says the device booted through EFI firmware (/sys/firmware/efi exists): a GRUB board then keeps
	// its environment in /EFI/BOOT/grubenv, as balenaOS's 99-resin-grub decides. On an image it is unknown
	// and taken from the device type (grub-efi) and the files present.
	EFI bool
	// RunDir is the device's /run, where balenaOS's VPN leaves openvpn/vpn_status/active while it is
	// connected; "" on an image (no VPN).
	RunDir string

	chunk int // slot write size; 0: slotChunk
}

// OpenImage opens a balenaOS disk image for updating: the boot partition's FAT, the state partition's
// ext4 (through debugfs) and the root slots, all found by label. booted is the slot taken as running
// ("" for the one the bootloader points at).
func OpenImage(d disk.Disk, booted bootenv.Slot) (*Target, error) {
	t, boot, bfs, err := bootfs.Open(d)
	if err != nil {
		return nil, err
	}
	_ = boot
	tg := &Target{Disk: d, Boot: bfs, Slots: map[bootenv.Slot]partition.Partition{}, Labels: map[bootenv.Slot]string{}}
	if err := tg.locateSlots(d, t); err != nil {
		return nil, err
	}
	state, err := probe.Locate(d, t, partition.State.Labels()...)
	if err != nil {
		return nil, fmt.Errorf("state partition: %w", err)
	}
	for slot, p := range tg.Slots {
		if p.Number == state.Number {
			return nil, fmt.Errorf("root slot %s: partition %d is also the state partition", slot, p.Number)
		}
	}
	tg.State = &ext4Store{fs: ext4.Debugfs{Image: d.Path(), Offset: state.Start}, disk: d, size: state.Size}
	if err := tg.finish(booted); err != nil {
		return nil, err
	}
	return tg, nil
}

// locateSlots finds the root slots by label. A slot being written has no filesystem (and so no label)
// until its last write: it is then the neighbour of the other slot, as in every balenaOS layout (rootA
// directly before rootB), provided that partition carries no other label.
func (tg *Target) locateSlots(d disk.Disk, t *partition.Table) error {
	found := map[bootenv.Slot]error{}
	for slot, role := range slotRoles {
		p, err := probe.Locate(d, t, role.Labels()...)
		if err != nil {
			if !errors.Is(err, probe.ErrNotFound) {
				return fmt.Errorf("root slot %s: %w", slot, err)
			}
			found[slot] = err
			continue
		}
		// A slot holds its filesystem, or none while it is being written (a GPT name still finds it).
		if fstype, _, _ := probe.Filesystem(d, p.Start, p.Size); fstype != "" && fstype != role.Filesystem() {
			return fmt.Errorf("root slot %s: partition %d holds %s, not %s", slot, p.Number, fstype, role.Filesystem())
		}
		tg.Slots[slot], tg.Labels[slot] = p, p.Label
	}
	for slot, err := range found {
		other, ok := tg.Slots[slot.Other()]
		if !ok {
			return fmt.Errorf("root slot %s: %w", slot, err)
		}
		n := other.Number + 1
		if slot == bootenv.SlotA {
			n = other.Number - 1
		}
		p, ok := t.Partition(n)
		if !ok {
			return fmt.Errorf("root slot %s: %w", slot, err)
		}
		if _, label, _ := probe.Filesystem(d, p.Start, p.Size); label != "" {
			return fmt.Errorf("root slot %s: partition %d carries label %q: %w", slot, n, label, err)
		}
		prefix := strings.TrimSuffix(tg.Labels[slot.Other()], string(slot.Other()))
		tg.Slots[slot], tg.Labels[slot] = p, prefix+string(slot)
	}
	return nil
}

// finish reads the device type, picks the bootloader backend and settles which slot runs.
func (tg *Target) finish(booted bootenv.Slot) error {
	if tg.Slots[bootenv.SlotA].Number == tg.Slots[bootenv.SlotB].Number {
		return errors.New("root slots A and B resolve to the same partition")
	}
	parts := bootenv.Parts{A: tg.Slots[bootenv.SlotA].Number, B: tg.Slots[bootenv.SlotB].Number}
	if b, err := tg.Boot.ReadFile("/device-type.json"); err == nil {
		m, err := config.ParseManifest(b)
		if err != nil {
			return err
		}
		tg.DeviceType, tg.Arch = m.Slug, m.Arch
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("device-type.json: %w", err)
	}
	var err error
	if dt, lerr := config.LookupDeviceType(tg.DeviceType); lerr == nil {
		tg.Env, err = bootenv.ForBootloader(dt.Bootloader, parts)
		if err == nil && tg.Env.Name() == "grub" {
			tg.Env = bootenv.GrubLayout(tg.Boot, parts, tg.EFI || dt.Bootloader == config.BootloaderGRUBEFI)
		}
	} else {
		tg.Env, err = bootenv.Detect(tg.Boot, parts)
		if err == nil && tg.Env.Name() == "grub" {
			tg.Env = bootenv.GrubLayout(tg.Boot, parts, tg.EFI)
		}
	}
	if err != nil {
		return err
	}
	switch booted {
	case "":
		env, err := tg.Env.Read(tg.Boot)
		if err != nil {
			return fmt.Errorf("bootloader environment: %w", err)
		}
		tg.Booted = env.Root
	case bootenv.SlotA, bootenv.SlotB:
		tg.Booted = booted
	default:
		return fmt.Errorf("slot %q: want A or B", booted)
	}
	return nil
}

// Read gathers the State the decisions need.
func (tg *Target) Read() (State, error) {
	env, err := tg.Env.Read(tg.Boot)
	if err != nil {
		return State{}, fmt.Errorf("bootloader environment: %w", err)
	}
	st := State{Env: env, Booted: tg.Booted, Crumbs: map[string]bool{}}
	if tg.RunDir != "" {
		_, err := os.Stat(filepath.Join(tg.RunDir, "openvpn/vpn_status/active"))
		st.VPNOnline = err == nil
	}
	for _, c := range Breadcrumbs {
		ok, err := tg.State.Has(c)
		if err != nil {
			return State{}, err
		}
		st.Crumbs[c] = ok
	}
	return st, nil
}

// Apply carries out a step: the old boot files first when it goes back to the slot an update replaced
// (each file atomic; until the bootloader switches, the slot on trial still boots, and a rerun restores
// again), then the bootloader (it decides what boots), then the breadcrumbs, then the boot-file backup
// goes, its job done.
func (tg *Target) Apply(s Step) error {
	restored := false
	if s.RestoreBoot {
		var err error
		if restored, err = tg.restoreBackup(s.Env.Root, time.Now()); err != nil {
			return fmt.Errorf("boot files of slot %s: %w", s.Env.Root, err)
		}
	}
	if err := tg.Env.Write(tg.Boot, s.Env); err != nil {
		return fmt.Errorf("bootloader environment: %w", err)
	}
	if err := tg.crumbs(s); err != nil {
		return err
	}
	// The fingerprint describes the boot partition, env files included: an env-only step (a commit, a
	// rollback, a boot count cleared) refreshes it as an update does. It is a description, written last.
	if _, err := tg.Boot.ReadFile("/" + config.FingerprintName); err == nil {
		if err := tg.refreshFingerprint(time.Now()); err != nil {
			return fmt.Errorf("fingerprint: %w", err)
		}
	}
	if restored {
		return tg.State.Remove(BootBackup)
	}
	return nil
}

func (tg *Target) crumbs(s Step) error {
	names := make([]string, 0, len(s.Put))
	for n := range s.Put {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tg.State.Put(n, s.Put[n]); err != nil {
			return err
		}
	}
	if b, ok := tg.State.(batchStore); ok {
		return b.Apply(s.Touch, s.Remove)
	}
	for _, c := range s.Touch {
		if err := tg.State.Touch(c); err != nil {
			return err
		}
	}
	for _, c := range s.Remove {
		if err := tg.State.Remove(c); err != nil {
			return err
		}
	}
	return nil
}

// SlotVersion reads the OS version in a slot from its /etc/os-release, in a flat slot or in the
// container a balenaOS hostapp slot's current link names; "" when the slot holds no readable system.
func (tg *Target) SlotVersion(s bootenv.Slot) string {
	p := tg.Slots[s]
	b, err := hostappfs.ReadFile(tg.Disk, p.Start, p.Size, "/etc/os-release")
	if err != nil {
		return ""
	}
	return config.OSVersion(b)
}
