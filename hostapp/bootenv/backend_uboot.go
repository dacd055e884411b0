package bootenv

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hostos/hostos/rootfs/bootfs"
)

// The U-Boot environment files on the boot partition, imported by balenaOS's U-Boot with `env import -t`.
const (
	uEnvPath      = "/resinOS_uEnv.txt"
	bootCountPath = "/bootcount.env"
)

type ubootBackend struct{ p Parts }

// UBoot is the environment of U-Boot boards (and Raspberry Pis, which balenaOS boots through U-Boot):
// resin_root_part, the root's partition number in hexadecimal (FormatRootPart), and upgrade_available in
// /resinOS_uEnv.txt; bootcount in /bootcount.env, which U-Boot rewrites on every counted boot.
//
// Missing files are a fresh image, read as U-Boot's built-in defaults: root A, no upgrade, bootcount 0
// (balenaOS's U-Boot defaults to partition 2, which is A in every balenaOS layout). Write leaves a file
// missing when it would only state that default.
//
// The count is read in decimal, the base Write uses and the base U-Boot's `test -gt` compares in. U-Boot
// itself increments it with setexpr, which writes hexadecimal without a prefix: the two agree up to 9, and a
// count with a letter (a to f, ten or more boots) is read in hexadecimal, since only setexpr writes those.
// "10" and up stay ambiguous (ten, or sixteen boots); either is far past the limit of 3.
//
// Write replaces /bootcount.env before /resinOS_uEnv.txt. balenaOS's U-Boot boots the other root whenever
// bootcount exceeds its limit, whether or not upgrade_available is set, so a high count must never outlive
// the root it counted. Making a fallback permanent, (B, upgrade, 4) -> (A, 0), shows why: resinOS_uEnv.txt
// first would, after a power loss between the writes, leave root A, no upgrade and count 4, and U-Boot would
// boot the broken B on every power-on without counting again. The count first leaves B on trial with count
// 0: three more tries, then back to A, where the OS finishes the job.
func UBoot(p Parts) Backend { return ubootBackend{p} }

func (ubootBackend) Name() string    { return "u-boot" }
func (ubootBackend) Files() []string { return []string{uEnvPath, bootCountPath} }
func (u ubootBackend) Parts() Parts  { return u.p } // the root partitions, for package bootsim

func (u ubootBackend) Read(fsys bootfs.FS) (Env, error) {
	if err := u.p.check(); err != nil {
		return Env{}, err
	}
	uenv, err := readEnvFile(fsys, uEnvPath, DecodeUEnv)
	if err != nil {
		return Env{}, err
	}
	bc, err := readEnvFile(fsys, bootCountPath, DecodeUEnv)
	if err != nil {
		return Env{}, err
	}
	e := Env{Root: SlotA}
	if v, ok := uenv.vars[varRoot]; ok {
		n, err := ParseRootPart(v)
		if err != nil {
			return Env{}, fmt.Errorf("%s: %w", uenv.name, err)
		}
		if e.Root, ok = u.p.Slot(n); !ok {
			return Env{}, fmt.Errorf("%s: %s=%s (partition %d) is neither root partition (A=%d, B=%d)", uenv.name, varRoot, v, n, u.p.A, u.p.B)
		}
	}
	if e.UpgradeAvailable, err = flag(uenv); err != nil {
		return Env{}, err
	}
	if v, ok := bc.vars[varBootCount]; ok {
		if e.BootCount, ok = parseUBootCount(v); !ok {
			return Env{}, fmt.Errorf("%s: %s=%q, want a count", bc.name, varBootCount, v)
		}
	}
	return e, nil
}

// parseUBootCount reads a bootcount as Write (decimal) or U-Boot's setexpr (lower-case hexadecimal without
// prefix or leading zeros) writes it; digits alone are decimal.
func parseUBootCount(s string) (int, bool) {
	s = strings.Trim(s, " \t")
	if n, ok := parseDecimal(s); ok {
		return n, true
	}
	if s == "" || s[0] == '0' || len(s) > 8 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 16, 32)
	return int(n), err == nil
}

func encodeUEnv(vars map[string]string) ([]byte, error) {
	if err := ValidateUEnv(vars); err != nil {
		return nil, err
	}
	return EncodeUEnv(vars), nil
}

func (u ubootBackend) Write(fsys bootfs.FS, e Env) error {
	if err := u.p.check(); err != nil {
		return err
	}
	if err := e.check(); err != nil {
		return err
	}
	bc, err := readEnvFile(fsys, bootCountPath, DecodeUEnv)
	if err != nil {
		return err
	}
	uenv, err := readEnvFile(fsys, uEnvPath, DecodeUEnv)
	if err != nil {
		return err
	}
	// Absent files and variables mean U-Boot's defaults; a file that already says so is left alone.
	set := map[string]string{varBootCount: strconv.Itoa(e.BootCount)}
	if !bc.holds(set, map[string]string{varBootCount: "0"}) {
		if err := bc.write(fsys, set, encodeUEnv); err != nil {
			return err
		}
	}
	set = map[string]string{
		varRoot:    FormatRootPart(u.p.Number(e.Root)),
		varUpgrade: formatFlag(e.UpgradeAvailable),
	}
	if !uenv.holds(set, map[string]string{varRoot: FormatRootPart(u.p.A), varUpgrade: "0"}) {
		if err := uenv.write(fsys, set, encodeUEnv); err != nil {
			return err
		}
	}
	return nil
}
