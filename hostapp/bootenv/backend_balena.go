package bootenv

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/hostos/hostos/rootfs/bootfs"
)

// bootEnvPath is balena's bootloader environment, a GRUB environment block (grub-editenv format).
const bootEnvPath = "/bootenv"

type balenaBackend struct{ p Parts }

// BalenaBootloader is the environment of balena's kexec bootloader (Raspberry Pi 5): one grubenv-format block,
// /bootenv, holding resin_root_part as the slot letter (A or B), upgrade_available and bootcount (decimal).
// The root partition numbers do not appear in the file. A fresh image holds /bootenv with resin_root_part=A;
// Read fails without it, or without resin_root_part, since the bootloader cannot pick a root then. Write
// creates it when missing and otherwise edits it as grub-editenv would (same size, order and other variables).
// With one file, every Write is atomic.
func BalenaBootloader(p Parts) Backend { return balenaBackend{p} }

func (balenaBackend) Name() string    { return "balena-bootloader" }
func (balenaBackend) Files() []string { return []string{bootEnvPath} }
func (b balenaBackend) Parts() Parts  { return b.p } // the root partitions, for package bootsim

func (b balenaBackend) Read(fsys bootfs.FS) (Env, error) {
	if err := b.p.check(); err != nil {
		return Env{}, err
	}
	f, err := readEnvFile(fsys, bootEnvPath, DecodeGrubEnv)
	if err != nil {
		return Env{}, err
	}
	if !f.present {
		return Env{}, fmt.Errorf("no balena bootloader environment %s: %w", bootEnvPath, fs.ErrNotExist)
	}
	v, ok := f.vars[varRoot]
	if !ok {
		return Env{}, fmt.Errorf("%s: no %s", f.name, varRoot)
	}
	e := Env{Root: Slot(strings.Trim(v, " \t"))}
	if !e.Root.valid() {
		return Env{}, fmt.Errorf("%s: %s=%q, want A or B", f.name, varRoot, v)
	}
	if e.UpgradeAvailable, err = flag(f); err != nil {
		return Env{}, err
	}
	if e.BootCount, err = decimalCount(f); err != nil {
		return Env{}, err
	}
	return e, nil
}

func (b balenaBackend) Write(fsys bootfs.FS, e Env) error {
	if err := b.p.check(); err != nil {
		return err
	}
	if err := e.check(); err != nil {
		return err
	}
	f, err := readEnvFile(fsys, bootEnvPath, DecodeGrubEnv)
	if err != nil {
		return err
	}
	set := map[string]string{
		varRoot:      string(e.Root),
		varUpgrade:   formatFlag(e.UpgradeAvailable),
		varBootCount: strconv.Itoa(e.BootCount),
	}
	// resin_root_part has no default: without it (or without the file) the bootloader has no root.
	if f.holds(set, map[string]string{varUpgrade: "0", varBootCount: "0"}) {
		return nil
	}
	return f.writeGrubEnv(fsys, set)
}
