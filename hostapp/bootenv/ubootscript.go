package bootenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// UBootScript is the boot script hostos ships for U-Boot boards that load one (distro_bootcmd runs boot.scr
// from the first partition it finds it on). It selects the root as the UBoot backend's files mean it, the
// way meta-balena's env_resin.h does on balenaOS's own U-Boot builds:
//
//   - defaults: resin_root_part is root A (the boot partition's number + 1, in hexadecimal, as setexpr
//     computes it), upgrade_available=0, os_bc_lim=3, os_bc_skip=0, os_bc_wr_sz=0xd;
//   - `env import -t` of resinOS_uEnv.txt, extra_uEnv.txt and bootcount.env from the boot partition, each
//     when it loads; bootcount=0 when bootcount.env does not;
//   - while upgrade_available=1 (and os_bc_skip=0): `setexpr bootcount ${bootcount} + 1` and fatwrite of
//     os_bc_wr_sz bytes of `env export -t bootcount` to bootcount.env;
//   - when `test ${bootcount} -gt ${os_bc_lim}`, resin_root_part becomes the other root, in memory only;
//   - the root is passed as root=PARTUUID= from `part uuid`, since U-Boot builds without CONFIG_CMD_FS_UUID
//     (Debian's among them) have no fsuuid for balena's root=UUID=.
//
// Before loading the kernel it prints one line, "hostos-uboot: root=<part> bootcount=<n>
// upgrade_available=<0|1>", that tests read. A kernel or initramfs that does not load ends the script with
// `reset`, so a board retries rather than dropping to U-Boot's next boot target.
//
// What the board's U-Boot must provide: the commands fatload, fatwrite (CONFIG_FAT_WRITE), env import and
// env export (CONFIG_CMD_IMPORTENV, CONFIG_CMD_EXPORTENV), setexpr, test, part uuid (CONFIG_PARTITION_UUIDS),
// reset and the boot command; the load addresses kernel_addr_r and ramdisk_addr_r; devtype and devnum of the
// boot disk (distro_bootcmd sets them) or DevType/DevIndex; a device tree at fdtcontroladdr, or FDT.
type UBootScript struct {
	Kernel   string // kernel path on the boot partition, e.g. "/Image"; required
	Initrd   string // initramfs path on the boot partition; "" for none
	FDT      string // device tree path on the boot partition, loaded at fdt_addr_r; "" uses ${fdtcontroladdr}
	BootCmd  string // "booti" (arm64 Image, the default), "bootz" (arm zImage) or "bootm"
	Cmdline  string // kernel arguments after root=PARTUUID=... rootwait; may use U-Boot variables
	DevType  string // U-Boot device type of the boot disk when distro_bootcmd did not set devtype, e.g. "mmc"
	DevIndex int    // its device index, with DevType
}

// The variables the script reads from the environment files beyond the backend's own.
const (
	extraUEnvPath = "/extra_uEnv.txt"
	bootCountLim  = 3
)

func (s UBootScript) check() error {
	for _, f := range []struct{ what, v string }{{"kernel", s.Kernel}, {"initrd", s.Initrd}, {"device tree", s.FDT}} {
		if f.v == "" && f.what != "kernel" {
			continue
		}
		if !strings.HasPrefix(f.v, "/") || strings.ContainsAny(f.v, " \t\n\"'$;\\") {
			return fmt.Errorf("u-boot script: %s path %q, want an absolute path without blanks, quotes or $", f.what, f.v)
		}
	}
	switch s.BootCmd {
	case "", "booti", "bootz", "bootm":
	default:
		return fmt.Errorf("u-boot script: boot command %q, want booti, bootz or bootm", s.BootCmd)
	}
	if strings.ContainsAny(s.Cmdline, "\n\"\\;") {
		return fmt.Errorf("u-boot script: kernel command line %q holds a newline, quote, backslash or ';'", s.Cmdline)
	}
	if strings.ContainsAny(s.DevType, " \t\n\"'$;\\") || s.DevIndex < 0 {
		return fmt.Errorf("u-boot script: device %q %d: bad type or index", s.DevType, s.DevIndex)
	}
	return nil
}

// Source returns the script's text, the input of mkimage -T script.
func (s UBootScript) Source() (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	bootCmd := s.BootCmd
	if bootCmd == "" {
		bootCmd = "booti"
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w(`# hostos A/B root selection with boot counting, for U-Boot (boot.scr).
# Root A is the partition after the boot partition, root B the one after it; the
# environment files are %s, %s and %s on the boot partition.
setenv resin_boot_part 1
setexpr resin_roota ${resin_boot_part} + 1
setexpr resin_rootb ${resin_boot_part} + 2
setenv resin_root_part ${resin_roota}
setenv upgrade_available 0
setenv os_bc_lim %d
setenv os_bc_skip 0
setenv os_bc_wr_sz 0xd
setenv bootcount
`, uEnvPath[1:], extraUEnvPath[1:], bootCountPath[1:], bootCountLim)
	if s.DevType != "" {
		w("setenv resin_dev_type %s\nsetenv resin_dev_index %d\n", s.DevType, s.DevIndex)
	}
	w(`if test -n "${devtype}"; then
	setenv resin_dev_type ${devtype}
	setenv resin_dev_index ${devnum}
fi
setenv resin_load_addr ${kernel_addr_r}

# resin_inject_env_file
for resin_env_file in %s %s; do
	if fatload ${resin_dev_type} ${resin_dev_index}:${resin_boot_part} ${resin_load_addr} ${resin_env_file}; then
		env import -t ${resin_load_addr} ${filesize}
	fi
done
if fatload ${resin_dev_type} ${resin_dev_index}:${resin_boot_part} ${resin_load_addr} %s; then
	env import -t ${resin_load_addr} ${filesize}
else
	setenv bootcount 0
fi

# os_inc_bc_save: count boots of an uncommitted root.
if test "${os_bc_skip}" = 0 && test "${upgrade_available}" = 1; then
	setexpr bootcount ${bootcount} + 1
	env export -t ${resin_load_addr} bootcount
	fatwrite ${resin_dev_type} ${resin_dev_index}:${resin_boot_part} ${resin_load_addr} %s ${os_bc_wr_sz}
fi

# resin_check_altroot: past the limit, boot the other root (in memory only).
if test ${bootcount} -gt ${os_bc_lim}; then
	echo "WARNING! BOOTLIMIT EXCEEDED. SWITCHING TO PREVIOUS ROOT"
	if test "${resin_root_part}" = "${resin_roota}"; then
		setenv resin_root_part ${resin_rootb}
	else
		setenv resin_root_part ${resin_roota}
	fi
fi

# The root by partition UUID, read from the partition table.
part uuid ${resin_dev_type} ${resin_dev_index}:${resin_root_part} resin_root_part_uuid
setenv resin_kernel_root "root=PARTUUID=${resin_root_part_uuid}"
echo "hostos-uboot: root=${resin_root_part} bootcount=${bootcount} upgrade_available=${upgrade_available}"
`, uEnvPath[1:], extraUEnvPath[1:], bootCountPath[1:], bootCountPath[1:])
	// load fatloads path at addr, running then on success and reset on failure.
	load := func(addr, path, then string) {
		w("if fatload ${resin_dev_type} ${resin_dev_index}:${resin_boot_part} %s %s; then\n\t%s\nelse\n\techo \"hostos-uboot: cannot load %s\"\n\treset\nfi\n", addr, path[1:], then, path[1:])
	}
	load("${kernel_addr_r}", s.Kernel, "setenv resin_kernel_size ${filesize}")
	initrd := "-"
	if s.Initrd != "" {
		load("${ramdisk_addr_r}", s.Initrd, "setenv resin_initrd ${ramdisk_addr_r}:${filesize}")
		initrd = "${resin_initrd}"
	}
	fdt := "${fdtcontroladdr}"
	if s.FDT != "" {
		load("${fdt_addr_r}", s.FDT, "setenv resin_fdt_size ${filesize}")
		fdt = "${fdt_addr_r}"
	}
	cmdline := strings.TrimSpace("${resin_kernel_root} rootwait " + s.Cmdline)
	w("setenv bootargs \"%s ${os_cmdline} ${extra_os_cmdline}\"\n%s ${kernel_addr_r} %s %s\n", cmdline, bootCmd, initrd, fdt)
	w("echo \"hostos-uboot: %s returned\"\nreset\n", bootCmd)
	return b.String(), nil
}

// ErrMkimage wraps failures of mkimage itself (missing or failing), as opposed to a bad script.
var ErrMkimage = errors.New("mkimage")

// CompileUBootScript wraps the script's source in a legacy U-Boot image of type script, uncompressed, as
// `mkimage -A ARCH -O linux -T script -C none` does: what the board's `source` command (and distro_bootcmd)
// runs as boot.scr. arch is mkimage's architecture name ("arm64", "arm", "riscv"...).
func CompileUBootScript(ctx context.Context, s UBootScript, arch string) ([]byte, error) {
	src, err := s.Source()
	if err != nil {
		return nil, err
	}
	if arch == "" || strings.ContainsAny(arch, " \t\n/") {
		return nil, fmt.Errorf("u-boot script: architecture %q", arch)
	}
	return Mkimage{}.Script(ctx, arch, "hostos boot script", []byte(src))
}

// Mkimage runs U-Boot's mkimage (u-boot-tools). Path is the binary; "" finds mkimage on PATH.
type Mkimage struct{ Path string }

// Script returns src wrapped as an uncompressed legacy script image named name for arch.
func (m Mkimage) Script(ctx context.Context, arch, name string, src []byte) ([]byte, error) {
	bin := m.Path
	if bin == "" {
		p, err := exec.LookPath("mkimage")
		if err != nil {
			return nil, fmt.Errorf("%w: not installed (u-boot-tools): %w", ErrMkimage, err)
		}
		bin = p
	}
	dir, err := os.MkdirTemp("", "hostos-mkimage-")
	if err != nil {
		return nil, fmt.Errorf("mkimage work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "boot.cmd"), filepath.Join(dir, "boot.scr")
	if err := os.WriteFile(in, src, 0o644); err != nil {
		return nil, fmt.Errorf("mkimage input: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, "-A", arch, "-O", "linux", "-T", "script", "-C", "none", "-n", name, "-d", in, out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w -A %s -T script: %w: %s", ErrMkimage, arch, err, strings.TrimSpace(stderr.String()))
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("mkimage output: %w", err)
	}
	return data, nil
}
