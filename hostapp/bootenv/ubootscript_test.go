package bootenv_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/tests/testtool"
)

var qemuScript = bootenv.UBootScript{Kernel: "/Image", Initrd: "/initrd.img", Cmdline: "console=ttyAMA0 panic=1"}

// TestUBootScriptSource pins the script to the UBoot backend's files and to env_resin.h's steps, in order.
func TestUBootScriptSource(t *testing.T) {
	src, err := qemuScript.Source()
	if err != nil {
		t.Fatal(err)
	}
	files := bootenv.UBoot(parts).Files()
	steps := []string{
		"setexpr resin_roota ${resin_boot_part} + 1\n",
		"setexpr resin_rootb ${resin_boot_part} + 2\n",
		"setenv resin_root_part ${resin_roota}\n",
		"setenv upgrade_available 0\n",
		"setenv os_bc_lim 3\n",
		"setenv os_bc_wr_sz 0xd\n",
		"for resin_env_file in " + files[0][1:] + " extra_uEnv.txt; do",
		"env import -t ${resin_load_addr} ${filesize}",
		"${resin_load_addr} " + files[1][1:] + "; then",
		"setenv bootcount 0\n",
		`if test "${os_bc_skip}" = 0 && test "${upgrade_available}" = 1; then`,
		"setexpr bootcount ${bootcount} + 1\n",
		"env export -t ${resin_load_addr} bootcount\n",
		"fatwrite ${resin_dev_type} ${resin_dev_index}:${resin_boot_part} ${resin_load_addr} " + files[1][1:] + " ${os_bc_wr_sz}\n",
		"if test ${bootcount} -gt ${os_bc_lim}; then",
		"setenv resin_root_part ${resin_rootb}\n",
		"part uuid ${resin_dev_type} ${resin_dev_index}:${resin_root_part} resin_root_part_uuid\n",
		`setenv resin_kernel_root "root=PARTUUID=${resin_root_part_uuid}"`,
		"hostos-uboot: root=${resin_root_part}",
		"${kernel_addr_r} Image; then",
		"${ramdisk_addr_r} initrd.img; then",
		`setenv bootargs "${resin_kernel_root} rootwait console=ttyAMA0 panic=1 ${os_cmdline} ${extra_os_cmdline}"`,
		"booti ${kernel_addr_r} ${resin_initrd} ${fdtcontroladdr}\n",
	}
	rest := src
	for _, s := range steps {
		i := strings.Index(rest, s)
		if i < 0 {
			t.Fatalf("script lacks %q after the previous steps:\n%s", s, src)
		}
		rest = rest[i+len(s):]
	}
	if strings.Contains(src, "fsuuid") || strings.Contains(src, "saveenv") {
		t.Error("the script uses fsuuid or saveenv")
	}
	// Every if has its fi, every for its done.
	count := func(re string) int { return len(strings.Fields(strings.Join(lines(src, re), " "))) }
	if count("if ") != count("fi") || count("for ") != count("done") {
		t.Errorf("unbalanced if/fi or for/done:\n%s", src)
	}

	noInitrd, err := bootenv.UBootScript{Kernel: "/zImage", BootCmd: "bootz", FDT: "/dtb/board.dtb", DevType: "mmc", DevIndex: 1}.Source()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"setenv resin_dev_type mmc\nsetenv resin_dev_index 1\n", "bootz ${kernel_addr_r} - ${fdt_addr_r}\n", "${fdt_addr_r} dtb/board.dtb; then"} {
		if !strings.Contains(noInitrd, s) {
			t.Errorf("script without initramfs lacks %q:\n%s", s, noInitrd)
		}
	}
}

// lines returns the first word of each line that starts (after tabs) with prefix.
func lines(src, prefix string) []string {
	var out []string
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimLeft(l, "\t")
		if strings.HasPrefix(l, prefix) {
			out = append(out, strings.Fields(l)[0])
		}
	}
	return out
}

func TestUBootScriptRejects(t *testing.T) {
	for _, s := range []bootenv.UBootScript{
		{},
		{Kernel: "Image"},
		{Kernel: "/Image with space"},
		{Kernel: "/Image", Initrd: "/$x"},
		{Kernel: "/Image", BootCmd: "go"},
		{Kernel: "/Image", Cmdline: "a\"b"},
		{Kernel: "/Image", Cmdline: "a; reset"},
		{Kernel: "/Image", DevType: "mmc 0"},
		{Kernel: "/Image", DevIndex: -1},
	} {
		if src, err := s.Source(); err == nil {
			t.Errorf("%+v: accepted:\n%s", s, src)
		}
	}
}

// TestCompileUBootScript has mkimage wrap the script and judges the result by the legacy image format
// (header CRC, type script, the length table, the payload CRC) and by mkimage -l.
func TestCompileUBootScript(t *testing.T) {
	mkimage := testtool.Need(t, "mkimage")
	img, err := bootenv.CompileUBootScript(context.Background(), qemuScript, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := qemuScript.Source()
	if len(img) < 72 || binary.BigEndian.Uint32(img) != 0x27051956 {
		t.Fatalf("not a legacy U-Boot image: % x", img[:min(len(img), 16)])
	}
	hdr := bytes.Clone(img[:64])
	hcrc := binary.BigEndian.Uint32(hdr[4:])
	copy(hdr[4:8], []byte{0, 0, 0, 0})
	if crc32.ChecksumIEEE(hdr) != hcrc {
		t.Error("header CRC does not match")
	}
	size, dcrc := binary.BigEndian.Uint32(img[12:]), binary.BigEndian.Uint32(img[24:])
	if int(size) != len(img)-64 || crc32.ChecksumIEEE(img[64:]) != dcrc {
		t.Errorf("payload size %d (image %d) or CRC wrong", size, len(img))
	}
	if os, arch, typ, comp := img[28], img[29], img[30], img[31]; os != 5 || arch != 22 || typ != 6 || comp != 0 {
		t.Errorf("os %d arch %d type %d comp %d, want linux(5) arm64(22) script(6) none(0)", os, arch, typ, comp)
	}
	// A script image's payload: a table of lengths ending in 0, then the script.
	if n := binary.BigEndian.Uint32(img[64:]); int(n) != len(src) || binary.BigEndian.Uint32(img[68:]) != 0 || string(img[72:]) != src {
		t.Errorf("payload is not the script (length %d, want %d)", n, len(src))
	}
	p := filepath.Join(t.TempDir(), "boot.scr")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(mkimage, "-l", p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Script") || !strings.Contains(string(out), "AArch64") {
		t.Errorf("mkimage -l: %v\n%s", err, out)
	}

	if _, err := bootenv.CompileUBootScript(context.Background(), bootenv.UBootScript{}, "arm64"); err == nil || errors.Is(err, bootenv.ErrMkimage) {
		t.Errorf("an invalid script: %v, want a script error", err)
	}
	if _, err := bootenv.CompileUBootScript(context.Background(), qemuScript, "no-such-arch"); !errors.Is(err, bootenv.ErrMkimage) {
		t.Errorf("an unknown architecture: %v, want ErrMkimage", err)
	}
	if _, err := (bootenv.Mkimage{Path: filepath.Join(t.TempDir(), "mkimage")}).Script(context.Background(), "arm64", "x", []byte("echo\n")); !errors.Is(err, bootenv.ErrMkimage) {
		t.Errorf("a missing mkimage: %v, want ErrMkimage", err)
	}
}
