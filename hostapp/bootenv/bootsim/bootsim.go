// Package bootsim simulates, for tests, what a balenaOS bootloader does with its environment at power-on:
// which root it boots and what it writes back.
package bootsim

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/rootfs/bootfs"
)

// Boot evaluates one power-on of the device the way the bootloader's script does, updating the env files
// exactly as the real script would, and returns the slot whose kernel and root get booted. The backend
// names the bootloader and its root partitions; Boot reads the files itself, as the bootloader does, not
// through the backend. A fallback to the other root happens in memory only, as on the device.
func Boot(b bootenv.Backend, fsys bootfs.FS) (bootenv.Slot, error) {
	pb, ok := b.(interface{ Parts() bootenv.Parts })
	if !ok {
		return "", fmt.Errorf("bootloader %s: the backend does not tell its root partitions", b.Name())
	}
	p := pb.Parts()
	switch b.Name() {
	case "grub":
		// The layout's GRUB configuration: hostos's GrubBootCountScript counts in /grub/grubenv, balenaOS's EFI
		// grub.cfg in /EFI/BOOT/grubenv ($prefix).
		if eb, ok := b.(interface{ EnvFile() string }); ok && eb.EnvFile() == efiGrubEnv {
			return grubEFI(fsys, p)
		}
		return grub(fsys, p)
	case "u-boot":
		return uboot(fsys, p)
	case "balena-bootloader":
		return balena(fsys)
	}
	return "", fmt.Errorf("bootloader %q: no simulation", b.Name())
}

// readFile returns the content of name and whether it exists.
func readFile(fsys bootfs.FS, name string) ([]byte, bool, error) {
	data, err := fsys.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", name, err)
	}
	return data, true, nil
}

func slotOf(p bootenv.Parts, n int, what string) (bootenv.Slot, error) {
	s, ok := p.Slot(n)
	if !ok {
		return "", fmt.Errorf("%s boots partition %d, neither root (A=%d, B=%d)", what, n, p.A, p.B)
	}
	return s, nil
}

// grub models bootenv.GrubBootCountScript, generalised from partitions 2 and 3 to p: defaults for the three
// variables, load_env of /grub/grubenv when it exists, and while upgrade_available is "1" the step of
// bootcount "0" to "1" or "1" to "2" with save_env (which rewrites the block keeping its other variables);
// then the root is resin_root_part when the count is "1" (or upgrade_available is not "1"), else the other
// one. Values are compared as strings, as GRUB's test does.
func grub(fsys bootfs.FS, p bootenv.Parts) (bootenv.Slot, error) {
	const name = "/grub/grubenv"
	vars := map[string]string{
		"resin_root_part":   strconv.Itoa(p.A),
		"upgrade_available": "0",
		"bootcount":         "0",
	}
	data, ok, err := readFile(fsys, name)
	if err != nil {
		return "", err
	}
	var block map[string]string
	if ok {
		if block, err = bootenv.DecodeGrubEnv(data); err != nil {
			return "", fmt.Errorf("grub load_env %s: %w", name, err)
		}
		for k := range vars {
			if v, ok := block[k]; ok {
				vars[k] = v
			}
		}
	}
	part := vars["resin_root_part"]
	if vars["upgrade_available"] == "1" {
		next := map[string]string{"0": "1", "1": "2"}[vars["bootcount"]]
		if next != "" {
			vars["bootcount"] = next
			if block != nil { // save_env fails, changing nothing, without the file
				block["bootcount"] = next
				if err := writeGrubEnv(fsys, name, block); err != nil {
					return "", err
				}
			}
		}
		if vars["bootcount"] != "1" {
			if part == strconv.Itoa(p.A) {
				part = strconv.Itoa(p.B)
			} else {
				part = strconv.Itoa(p.A)
			}
		}
	}
	n, err := strconv.Atoi(part)
	if err != nil {
		return "", fmt.Errorf("grub: resin_root_part %q is not a partition number", part)
	}
	return slotOf(p, n, "grub")
}

// efiGrubEnv is the grubenv balenaOS's EFI grub.cfg loads and saves: grubenv in $prefix, /EFI/BOOT.
const efiGrubEnv = "/EFI/BOOT/grubenv"

// grubEFI models balenaOS's EFI grub.cfg (meta-balena's grub.cfg_internal, as the meta-balena oracle's
// grub-boot.sh runs it), which the bootenv.GrubEFI layout boots: resin_root_part defaults to partition A and
// bootcount to 0, load_env of /EFI/BOOT/grubenv; while upgrade_available is "1", bootcount "1" becomes "2",
// else "0" becomes "1", each with save_env; then a bootcount of "2" boots the other root, whatever
// upgrade_available says. Values are compared as strings, as GRUB's test does. It differs from grub only in
// the file and in that last rule: a stale count of 2 redirects a committed root, which hostos never leaves
// (every commit and switch writes bootcount 0).
func grubEFI(fsys bootfs.FS, p bootenv.Parts) (bootenv.Slot, error) {
	vars := map[string]string{"resin_root_part": strconv.Itoa(p.A), "bootcount": "0"}
	data, ok, err := readFile(fsys, efiGrubEnv)
	if err != nil {
		return "", err
	}
	var block map[string]string
	if ok {
		if block, err = bootenv.DecodeGrubEnv(data); err != nil {
			return "", fmt.Errorf("grub load_env %s: %w", efiGrubEnv, err)
		}
		maps.Copy(vars, block)
	}
	if vars["upgrade_available"] == "1" {
		next := map[string]string{"0": "1", "1": "2"}[vars["bootcount"]]
		if next != "" {
			vars["bootcount"] = next
			if block != nil { // save_env fails, changing nothing, without the file
				block["bootcount"] = next
				if err := writeGrubEnv(fsys, efiGrubEnv, block); err != nil {
					return "", err
				}
			}
		}
	}
	part := vars["resin_root_part"]
	if vars["bootcount"] == "2" {
		if part == strconv.Itoa(p.A) {
			part = strconv.Itoa(p.B)
		} else {
			part = strconv.Itoa(p.A)
		}
	}
	n, err := strconv.Atoi(part)
	if err != nil {
		return "", fmt.Errorf("grub: resin_root_part %q is not a partition number", part)
	}
	return slotOf(p, n, "grub")
}

func writeGrubEnv(fsys bootfs.FS, name string, vars map[string]string) error {
	data, err := bootenv.EncodeGrubEnv(vars)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := fsys.WriteFile(name, data, time.Now()); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// bootCountSize is os_bc_wr_sz: U-Boot fatwrites exactly this many bytes of `env export -t bootcount`,
// which is "bootcount=N\n" and a NUL.
const bootCountSize = 0xd

// uboot models balenaOS's U-Boot environment (meta-balena env_resin.h, run from resin_set_kernel_root):
//
//   - resin_inject_env_file: start from the built-in defaults (resin_root_part of root A, upgrade_available 0,
//     os_bc_lim 3, os_bc_skip 0), `env import -t` resinOS_uEnv.txt, extra_uEnv.txt and bootcount.env when
//     they exist (an empty value deletes a variable), and set bootcount=0 when bootcount.env does not.
//   - os_inc_bc_save: when os_bc_skip is 0 and upgrade_available is 1, `setexpr bootcount ${bootcount} + 1`,
//     which reads and writes hexadecimal without prefix, and fatwrite os_bc_wr_sz bytes of
//     `env export -t bootcount` to bootcount.env.
//   - resin_check_altroot: when `test ${bootcount} -gt ${os_bc_lim}`, which reads both in decimal (a 0x
//     prefix means hexadecimal, stopping at the first other character), resin_root_part becomes the other
//     root in memory: root B when it equals root A's number as a string, else root A.
//
// The base mismatch is U-Boot's, and kept: a count of "a" to "f" compares as 0, so after ten uncommitted
// boots the board tries the new root again for six boots.
//
// bootenv.UBootScript does the same steps; tests/e2e (TestE2E/arm64/bootsim) boots it on Debian's U-Boot in
// QEMU over nine sets of env files and checks that this model chooses the same root and leaves the same
// bootcount.env, byte for byte.
func uboot(fsys bootfs.FS, p bootenv.Parts) (bootenv.Slot, error) {
	roota, rootb := bootenv.FormatRootPart(p.A), bootenv.FormatRootPart(p.B)
	env := map[string]string{
		"resin_root_part":   roota,
		"upgrade_available": "0",
		"os_bc_lim":         "3",
		"os_bc_skip":        "0",
	}
	load := func(name string) (bool, error) {
		data, ok, err := readFile(fsys, name)
		if !ok || err != nil {
			return false, err
		}
		vars, err := bootenv.DecodeUEnv(data)
		if err != nil {
			return false, fmt.Errorf("u-boot env import %s: %w", name, err)
		}
		for k, v := range vars {
			if v == "" {
				delete(env, k)
			} else {
				env[k] = v
			}
		}
		return true, nil
	}
	for _, name := range []string{"/resinOS_uEnv.txt", "/extra_uEnv.txt"} {
		if _, err := load(name); err != nil {
			return "", err
		}
	}
	ok, err := load("/bootcount.env")
	if err != nil {
		return "", err
	}
	if !ok {
		env["bootcount"] = "0"
	}

	if word(env["os_bc_skip"]) == "0" && word(env["upgrade_available"]) == "1" {
		bc := strconv.FormatUint(hextoul(env["bootcount"])+1, 16)
		env["bootcount"] = bc
		out := []byte("bootcount=" + bc + "\n\x00")
		if len(out) > bootCountSize {
			out = out[:bootCountSize]
		}
		if err := fsys.WriteFile("/bootcount.env", out, time.Now()); err != nil {
			return "", fmt.Errorf("write /bootcount.env: %w", err)
		}
	}

	if env["os_bc_lim"] != "" && env["bootcount"] != "" && strtol(word(env["bootcount"])) > strtol(word(env["os_bc_lim"])) {
		if word(env["resin_root_part"]) == roota {
			env["resin_root_part"] = rootb
		} else {
			env["resin_root_part"] = roota
		}
	}
	n, err := bootenv.ParseRootPart(word(env["resin_root_part"]))
	if err != nil {
		return "", fmt.Errorf("u-boot: %w", err)
	}
	return slotOf(p, n, "u-boot")
}

// word is an unquoted ${var} as U-Boot's hush splits it, for single-word values.
func word(s string) string { return strings.TrimSpace(s) }

// hextoul reads s as U-Boot's setexpr does: hexadecimal, an optional 0x, up to the first non-hex character.
func hextoul(s string) uint64 {
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
	}
	return digits(s, 16)
}

// strtol reads s as U-Boot's test does (simple_strtol with base 0): 0x means hexadecimal, a leading 0 octal,
// else decimal, up to the first character that is not a digit of the base.
func strtol(s string) int64 {
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	base := uint64(10)
	switch {
	case len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, s = 16, s[2:]
	case len(s) >= 1 && s[0] == '0':
		base = 8
	}
	n := int64(digits(s, base))
	if neg {
		return -n
	}
	return n
}

// digits reads the leading digits of s in base, ignoring the rest.
func digits(s string, base uint64) uint64 {
	var n uint64
	for _, c := range []byte(s) {
		var d uint64
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		case 'A' <= c && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return n
		}
		if d >= base {
			return n
		}
		n = n*base + d
	}
	return n
}

// balena models abroot_run of balenaOS's initramfs, which stage 2 of balena's bootloader runs before it
// kexecs the OS: read /bootenv (grub-editenv list); when upgrade_available is 1, bootcount+1 is written back
// with grub-editenv set (other variables kept); then when bootcount is 3 or more (whatever
// upgrade_available says) the root is the other letter, in memory. Numbers are shell numbers: blanks around
// them are ignored, an empty or non-numeric count adds up from 0 and never compares as 3 or more.
func balena(fsys bootfs.FS) (bootenv.Slot, error) {
	const name = "/bootenv"
	data, ok, err := readFile(fsys, name)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("balena bootloader: no %s, so no A/B root selection", name)
	}
	vars, err := bootenv.DecodeGrubEnv(data)
	if err != nil {
		return "", fmt.Errorf("balena bootloader: %s: %w", name, err)
	}
	root, count := vars["resin_root_part"], vars["bootcount"]
	if ua, err := strconv.Atoi(word(vars["upgrade_available"])); err == nil && ua == 1 {
		n, _ := strconv.Atoi(word(count))
		count = strconv.Itoa(n + 1)
		vars["bootcount"] = count
		if err := writeGrubEnv(fsys, name, vars); err != nil {
			return "", err
		}
	}
	if n, err := strconv.Atoi(word(count)); err == nil && n >= 3 {
		if root == "A" {
			root = "B"
		} else {
			root = "A"
		}
	}
	s := bootenv.Slot(root)
	if s != bootenv.SlotA && s != bootenv.SlotB {
		return "", fmt.Errorf("balena bootloader: resin_root_part %q names no root", root)
	}
	return s, nil
}
