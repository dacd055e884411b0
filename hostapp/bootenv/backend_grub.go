package bootenv

import (
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/hostos/hostos/rootfs/bootfs"
)

// The GRUB environment blocks on the boot partition. grubEnvPath is the one GrubBootCountScript loads and
// counts boots in; grubEFIEnvPath is where balenaOS's own EFI grub.cfg looks (load_env from $prefix), kept in
// step so that either configuration finds the same state.
const (
	grubEnvPath    = "/grub/grubenv"
	grubEFIEnvPath = "/EFI/BOOT/grubenv"
)

// GrubBootCountScript is the grub.cfg fragment that selects the root the way the Grub backend's variables
// mean it, for the balenaOS layout (root A partition 2, root B partition 3, $root the boot partition when it
// runs). It loads /grub/grubenv; while upgrade_available=1 it counts boots 0 -> 1 -> 2 with save_env (GRUB has
// no arithmetic, so the count steps by comparison), boots resin_root_part on the first counted boot only and
// the other root on every later one, without changing the environment: the OS sees that it came up on the old
// root and switches back for good. It ends with root set to the chosen partition, hostos_root_part to its
// number and hostos_root_uuid to its file system UUID, for the menu entry that follows:
//
//	menuentry 'hostos' {
//		linux /boot/bzImage root=UUID=${hostos_root_uuid} rootwait
//	}
//
// It follows balenaOS's grub.cfg_internal (same variables, same 0 -> 1 -> 2 steps, the second boot of an
// uncommitted root falls back), except that it names its environment file instead of relying on $prefix, so
// legacy-BIOS and EFI boots count in the same file, that a stale bootcount cannot redirect a committed root
// (the fallback needs upgrade_available=1), and that it selects the partition by number rather than by label.
// package bootsim models it.
const GrubBootCountScript = `# hostos A/B root selection with boot counting, for GRUB.
# Root A is partition 2 and root B partition 3 of the boot disk; the environment
# is /grub/grubenv on the boot partition, which must be ${root} here.
insmod loadenv
insmod test
insmod regexp
insmod probe

set resin_root_part=2
set upgrade_available=0
set bootcount=0
if [ -f /grub/grubenv ]; then
	load_env --file /grub/grubenv resin_root_part upgrade_available bootcount
fi

set hostos_root_part="${resin_root_part}"
if [ "${upgrade_available}" = "1" ]; then
	# GRUB cannot add: count by comparison, and save only the count.
	if [ "${bootcount}" = "0" ]; then
		set bootcount=1
		save_env --file /grub/grubenv bootcount
	elif [ "${bootcount}" = "1" ]; then
		set bootcount=2
		save_env --file /grub/grubenv bootcount
	fi
	# An uncommitted root gets one boot. Every later boot runs the other root;
	# the environment keeps naming the new one until the OS switches it back.
	if [ "${bootcount}" != "1" ]; then
		if [ "${resin_root_part}" = "2" ]; then
			set hostos_root_part=3
		else
			set hostos_root_part=2
		fi
	fi
fi

# ${root} is "hd0,msdos1" or "hd0,gpt1": keep the disk and scheme, swap the number.
regexp --set=1:hostos_disk --set=2:hostos_scheme '^([^,]+),([a-z]+)[0-9]+$' "${root}"
set root="${hostos_disk},${hostos_scheme}${hostos_root_part}"
probe --set=hostos_root_uuid --fs-uuid "(${root})"
`

type grubBackend struct {
	p Parts
	// env is the block the layout's GRUB loads; other is the one balenaOS's 99-resin-grub deletes with its
	// directory on such a device (/EFI on a legacy boot, /grub on an EFI one).
	env, other string
}

// Grub is the environment of GRUB boards booting the legacy (BIOS) way, or running GrubBootCountScript:
// /grub/grubenv, holding resin_root_part (the root's partition number in decimal), upgrade_available (0 or
// 1) and bootcount (decimal). GrubEFI is the same in /EFI/BOOT/grubenv, where balenaOS's EFI grub.cfg loads
// it ($prefix). A fresh balenaOS or hostos image has both files; balenaOS's update hook (99-resin-grub)
// deletes the one its boot does not use, and its rollback scripts stop when they find two. So:
//
// Read takes the layout's file, or the other one when the layout's is missing (a device whose boot changed
// under it), and fails when neither exists; a file that exists must decode. Missing variables mean what
// GrubBootCountScript assumes: root A, no upgrade, bootcount 0.
//
// Write edits the file Read takes (creating the layout's when neither exists) as grub-editenv would, and
// then deletes the other one, so that after a Write that changes anything there is exactly one grubenv,
// and a file balenaOS deleted is never created again (an unchanged Env writes nothing). A power loss between the two leaves both, the written one the one Read
// and the layout's GRUB take.
func Grub(p Parts) Backend { return grubBackend{p, grubEnvPath, grubEFIEnvPath} }

// GrubEFI is Grub for boards that boot balenaOS's EFI grub.cfg, whose environment is /EFI/BOOT/grubenv.
func GrubEFI(p Parts) Backend { return grubBackend{p, grubEFIEnvPath, grubEnvPath} }

// GrubLayout picks the GRUB backend for a boot partition: /grub/grubenv when a grub.cfg on it runs
// GrubBootCountScript (which names that file, on EFI boards too), else /EFI/BOOT/grubenv when the board
// boots through EFI, else /grub/grubenv, as balenaOS's 99-resin-grub keeps them.
func GrubLayout(fsys bootfs.FS, p Parts, efi bool) Backend {
	for _, cfg := range []string{"/EFI/BOOT/grub.cfg", "/grub/grub.cfg"} {
		if b, err := fsys.ReadFile(cfg); err == nil && strings.Contains(string(b), grubScriptLoad) {
			return Grub(p)
		}
	}
	if efi {
		return GrubEFI(p)
	}
	return Grub(p)
}

// grubScriptLoad is the line of GrubBootCountScript that names its environment file.
const grubScriptLoad = "load_env --file " + grubEnvPath

func (grubBackend) Name() string    { return "grub" }
func (grubBackend) Files() []string { return []string{grubEnvPath, grubEFIEnvPath} }
func (g grubBackend) Parts() Parts  { return g.p } // the root partitions, for package bootsim

// EnvFile is the grubenv the layout's GRUB loads.
func (g grubBackend) EnvFile() string { return g.env }

// pick reads both files and returns the one that holds the state and the one that is stale.
func (g grubBackend) pick(fsys bootfs.FS) (use, stale envFile, err error) {
	use, err = readEnvFile(fsys, g.env, DecodeGrubEnv)
	if err != nil {
		return use, stale, err
	}
	stale, err = readEnvFile(fsys, g.other, DecodeGrubEnv)
	if err != nil {
		return use, stale, err
	}
	if !use.present && stale.present {
		use, stale = stale, use
	}
	return use, stale, nil
}

func (g grubBackend) Read(fsys bootfs.FS) (Env, error) {
	if err := g.p.check(); err != nil {
		return Env{}, err
	}
	use, _, err := g.pick(fsys)
	if err != nil {
		return Env{}, err
	}
	if !use.present {
		return Env{}, fmt.Errorf("no grub environment: neither %s nor %s: %w", grubEnvPath, grubEFIEnvPath, fs.ErrNotExist)
	}
	return g.decode(use)
}

// decode reads one grubenv. A missing resin_root_part means root A, as in GrubBootCountScript.
func (g grubBackend) decode(f envFile) (Env, error) {
	e := Env{Root: SlotA}
	if v, ok := f.vars[varRoot]; ok {
		n, ok := parseDecimal(v)
		if !ok {
			return Env{}, fmt.Errorf("%s: %s=%q, want a decimal partition number", f.name, varRoot, v)
		}
		if e.Root, ok = g.p.Slot(n); !ok {
			return Env{}, fmt.Errorf("%s: %s=%d is neither root partition (A=%d, B=%d)", f.name, varRoot, n, g.p.A, g.p.B)
		}
	}
	var err error
	if e.UpgradeAvailable, err = flag(f); err != nil {
		return Env{}, err
	}
	if e.BootCount, err = decimalCount(f); err != nil {
		return Env{}, err
	}
	return e, nil
}

func (g grubBackend) Write(fsys bootfs.FS, e Env) error {
	if err := g.p.check(); err != nil {
		return err
	}
	if err := e.check(); err != nil {
		return err
	}
	set := map[string]string{
		varRoot:      strconv.Itoa(g.p.Number(e.Root)),
		varUpgrade:   formatFlag(e.UpgradeAvailable),
		varBootCount: strconv.Itoa(e.BootCount),
	}
	use, stale, err := g.pick(fsys)
	if err != nil {
		return err
	}
	if use.present && use.holds(set, g.defaults()) {
		return nil // nothing changes: the partition is left alone, a stale file too
	}
	if !use.present {
		if err := fsys.MkdirAll(path.Dir(use.name), time.Now()); err != nil {
			return fmt.Errorf("create %s: %w", path.Dir(use.name), err)
		}
	}
	if err := use.writeGrubEnv(fsys, set); err != nil {
		return err
	}
	if stale.present {
		if err := fsys.Remove(stale.name); err != nil {
			return fmt.Errorf("remove %s: %w", stale.name, err)
		}
	}
	return nil
}

// defaults are the values GrubBootCountScript gives variables its grubenv lacks.
func (g grubBackend) defaults() map[string]string {
	return map[string]string{varRoot: strconv.Itoa(g.p.A), varUpgrade: "0", varBootCount: "0"}
}
