package bootenv

import (
	"fmt"
	"io/fs"
	"strconv"
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

type grubBackend struct{ p Parts }

// Grub is the environment of GRUB boards: grubenv blocks holding resin_root_part (the root's partition number
// in decimal), upgrade_available (0 or 1) and bootcount (decimal).
//
// Read takes the state from /grub/grubenv, the file GrubBootCountScript uses, or from /EFI/BOOT/grubenv when
// that is the only one (a balenaOS EFI board, whose update hook deletes /grub). When both exist and agree on
// root and upgrade_available, the larger bootcount of the two wins: the OS writes both alike and only the
// bootloader raises a count, in whichever file its grub.cfg loads. At least one must exist, and each that
// exists must decode.
//
// Missing variables mean what GrubBootCountScript assumes: root A, no upgrade, bootcount 0.
//
// Write updates /EFI/BOOT/grubenv first when it exists, and /grub/grubenv last, creating it (and /grub) when
// missing unless the Env is all defaults. /grub/grubenv is the commit point: after a power loss between the
// two writes it still holds the old state, which Read and GrubBootCountScript both see; only a board booting
// balenaOS's EFI grub.cfg would see the new one, which it boots too (the new root, counted).
func Grub(p Parts) Backend { return grubBackend{p} }

func (grubBackend) Name() string    { return "grub" }
func (grubBackend) Files() []string { return []string{grubEnvPath, grubEFIEnvPath} }
func (g grubBackend) Parts() Parts  { return g.p } // the root partitions, for package bootsim

func (g grubBackend) Read(fsys bootfs.FS) (Env, error) {
	if err := g.p.check(); err != nil {
		return Env{}, err
	}
	main, err := readEnvFile(fsys, grubEnvPath, DecodeGrubEnv)
	if err != nil {
		return Env{}, err
	}
	mirror, err := readEnvFile(fsys, grubEFIEnvPath, DecodeGrubEnv)
	if err != nil {
		return Env{}, err
	}
	if !main.present && !mirror.present {
		return Env{}, fmt.Errorf("no grub environment: neither %s nor %s: %w", grubEnvPath, grubEFIEnvPath, fs.ErrNotExist)
	}
	if !main.present {
		return g.env(mirror)
	}
	e, err := g.env(main)
	if err != nil || !mirror.present {
		return e, err
	}
	m, err := g.env(mirror)
	if err != nil {
		return Env{}, err
	}
	if m.Root == e.Root && m.UpgradeAvailable == e.UpgradeAvailable && m.BootCount > e.BootCount {
		e.BootCount = m.BootCount
	}
	return e, nil
}

// env decodes one grubenv. A missing resin_root_part means root A, as in GrubBootCountScript.
func (g grubBackend) env(f envFile) (Env, error) {
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
	mirror, err := readEnvFile(fsys, grubEFIEnvPath, DecodeGrubEnv)
	if err != nil {
		return err
	}
	main, err := readEnvFile(fsys, grubEnvPath, DecodeGrubEnv)
	if err != nil {
		return err
	}
	defaults := g.defaults()
	if mirror.present && !mirror.holds(set, defaults) {
		if err := mirror.write(fsys, set, EncodeGrubEnv); err != nil {
			return err
		}
	}
	if main.holds(set, defaults) {
		return nil
	}
	if !main.present {
		if err := fsys.MkdirAll("/grub", time.Now()); err != nil {
			return fmt.Errorf("create /grub: %w", err)
		}
	}
	return main.write(fsys, set, EncodeGrubEnv)
}

// defaults are the values GrubBootCountScript gives variables its grubenv lacks (or all of them, without
// /grub/grubenv).
func (g grubBackend) defaults() map[string]string {
	return map[string]string{varRoot: strconv.Itoa(g.p.A), varUpgrade: "0", varBootCount: "0"}
}
