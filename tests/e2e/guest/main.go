//go:build linux

// Command guest is the userland of the QEMU end-to-end test (tests/e2e): one static binary that is both the
// initramfs's /init (stage 1: load the kernel modules, mount the root partition GRUB chose, by its position
// on the boot disk, and switch to it) and the test root filesystem's /sbin/hostos-init (stage 2: run
// `hostos rollback-altboot`, the scenario's step and `hostos health` as a device would, print markers on the
// serial console, then reboot or power off). Markers start with "HOSTOS-E2E ".
//
// Kernel command line: hostos.root=<root partition number>, and the boot disk named by hostos.boot=<the boot
// partition's FAT UUID> (GRUB) or else by root=PARTUUID=<the root's partition UUID> (U-Boot's boot.scr);
// root= is also hostos's own check of the running root.
//
// It stands on u-root's packages where they do the job: pkg/kmodule loads the kernel modules (compressed or
// not), pkg/mount mounts and switches root (moving /dev, /proc and /sys, emptying the initramfs). Partitions
// are found with hostos's own hostapp/device.Scan, the code `hostos update` runs on a device, so that every
// boot exercises it.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/kmodule"
	umount "github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"

	"github.com/hostos/hostos/hostapp/device"
)

// modules are loaded in this order, in passes: a load failing for a missing dependency is retried.
var modules = []string{"virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
	"virtio_blk", "crc16", "mbcache", "jbd2", "crc32c_generic", "ext4", "fat", "vfat", "nls_cp437", "nls_ascii",
	"nls_utf8"}

func mark(format string, a ...any) {
	fmt.Fprintf(os.Stdout, "HOSTOS-E2E "+format+"\n", a...)
}

func main() {
	switch {
	case len(os.Args) > 1 && os.Args[1] == "true":
		os.Exit(0)
	case len(os.Args) > 1 && os.Args[1] == "false":
		os.Exit(1)
	case filepath.Base(os.Args[0]) == "init":
		stage1()
	default:
		stage2()
	}
}

// fatal ends PID 1: the kernel panics, and with panic=1 reboots.
func fatal(format string, a ...any) {
	mark("fatal: "+format, a...)
	time.Sleep(200 * time.Millisecond)
	os.Exit(1)
}

func cmdlineParam(name string) string {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}

// mount mounts with u-root's pkg/mount, creating the mount point where the file system allows it.
func mount(src, dst, fstype string, flags uintptr, data string) {
	mkdir := func() error {
		if err := os.MkdirAll(dst, 0o755); err != nil && !errors.Is(err, unix.EROFS) {
			return err
		}
		return nil
	}
	if _, err := umount.Mount(src, dst, fstype, data, flags, mkdir); err != nil {
		fatal("mount %s on %s (%s): %v", src, dst, fstype, err)
	}
}

func loadModules() {
	rel, err := os.ReadFile("/lib/modules/release")
	if err != nil {
		fatal("modules: %v", err)
	}
	dir := filepath.Join("/lib/modules", strings.TrimSpace(string(rel)))
	paths := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			paths[strings.TrimSuffix(d.Name(), ".ko")] = p
		}
		return nil
	})
	pending := modules
	for pass := 0; pass < 5 && len(pending) > 0; pass++ {
		var again []string
		for _, m := range pending {
			p, ok := paths[m]
			if !ok {
				continue // built in
			}
			f, err := os.Open(p)
			if err != nil {
				fatal("module %s: %v", m, err)
			}
			err = kmodule.FileInit(f, "", 0)
			f.Close()
			switch {
			case err == nil, errors.Is(err, unix.EEXIST):
			case errors.Is(err, unix.ENOENT):
				again = append(again, m)
			default:
				fatal("module %s: %v", m, err)
			}
		}
		pending = again
	}
	if len(pending) > 0 {
		fatal("modules not loaded: %v", pending)
	}
}

// bootDisk waits for the disk whose partition 1 carries the boot file system GRUB named (bootUUID), or else
// which holds the partition root=PARTUUID= names, and returns its partitions.
func bootDisk(bootUUID, rootPartUUID string) []device.Partition {
	deadline := time.Now().Add(30 * time.Second)
	for {
		parts, err := device.Scan("/sys", "/dev")
		if err == nil {
			for _, p := range parts {
				if bootUUID != "" && p.Number == 1 && strings.EqualFold(p.UUID, bootUUID) ||
					bootUUID == "" && rootPartUUID != "" && strings.EqualFold(p.PartUUID, rootPartUUID) {
					var disk []device.Partition
					for _, q := range parts {
						if q.Disk == p.Disk {
							disk = append(disk, q)
						}
					}
					return disk
				}
			}
		}
		if time.Now().After(deadline) {
			fatal("no disk with boot partition %q or root PARTUUID %q (scan: %v, %d partitions)", bootUUID, rootPartUUID, err, len(parts))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func partNode(parts []device.Partition, n int) string {
	for _, p := range parts {
		if p.Number == n {
			return p.Device
		}
	}
	fatal("boot disk has no partition %d", n)
	return ""
}

// labelNode is the partition of the boot disk whose file system has the label.
func labelNode(parts []device.Partition, label string) string {
	for _, p := range parts {
		if p.Label == label {
			return p.Device
		}
	}
	fatal("boot disk has no file system labelled %s", label)
	return ""
}

func stage1() {
	mount("proc", "/proc", "proc", 0, "")
	mount("sysfs", "/sys", "sysfs", 0, "")
	mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	mark("initramfs")
	loadModules()
	var rootN int
	if _, err := fmt.Sscanf(cmdlineParam("hostos.root"), "%d", &rootN); err != nil || rootN < 1 {
		fatal("hostos.root=%q", cmdlineParam("hostos.root"))
	}
	parts := bootDisk(cmdlineParam("hostos.boot"), strings.TrimPrefix(cmdlineParam("root"), "PARTUUID="))
	root := partNode(parts, rootN)
	mark("initramfs root=%d dev=%s", rootN, root)
	mount(root, "/newroot", "ext4", unix.MS_RDONLY, "")
	// balenaOS's places: boot is partition 1; state and data (4 and 5 on GPT, 5 and 6 on msdos) by label,
	// on the boot disk only.
	mount(partNode(parts, 1), "/newroot/mnt/boot", "vfat", 0, "")
	mount(labelNode(parts, "resin-state"), "/newroot/mnt/state", "ext4", 0, "")
	mount(labelNode(parts, "resin-data"), "/newroot/mnt/data", "ext4", 0, "")
	mount("tmpfs", "/newroot/run", "tmpfs", 0, "mode=0755")
	mount("tmpfs", "/newroot/tmp", "tmpfs", 0, "mode=1777")
	// u-root's switch_root: /dev, /proc and /sys move along, the initramfs is emptied, init is exec'd.
	log.SetOutput(io.Discard)
	err := umount.SwitchRoot("/newroot", "/sbin/hostos-init")
	fatal("exec /sbin/hostos-init: %v", err)
}

func must(err error) {
	if err != nil {
		fatal("%v", err)
	}
}

func osVersion() string {
	b, _ := os.ReadFile("/etc/os-release")
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VERSION_ID="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "?"
}

// run runs hostos with its output on the console and returns its exit code.
func run(args ...string) (int, []byte) {
	var out bytes.Buffer
	cmd := exec.Command("/usr/bin/hostos", args...)
	cmd.Stdout = &out
	cmd.Stderr = os.Stdout
	err := cmd.Run()
	os.Stdout.Write(out.Bytes())
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.Bytes()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.Bytes()
	}
	mark("run %v: %v", args, err)
	return 255, out.Bytes()
}

// payloadDisk is the virtio disk with serial "payload" (the harness attaches the bundle as a raw disk).
func payloadDisk() string {
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "serial"))
		if err == nil && strings.TrimSpace(string(b)) == "payload" {
			return "/dev/" + e.Name()
		}
	}
	return ""
}

func halt(how int) {
	unix.Sync()
	time.Sleep(200 * time.Millisecond)
	if err := unix.Reboot(how); err != nil {
		fatal("reboot: %v", err)
	}
	select {}
}

func stage2() {
	os.Setenv("PATH", "/usr/bin:/sbin:/bin")
	slot := map[string]string{"2": "A", "3": "B"}[cmdlineParam("hostos.root")]
	mark("booted slot=%s version=%s", slot, osVersion())
	if _, err := os.Stat("/mnt/boot/e2e-shell"); err == nil {
		shell() // make e2e-shell
	}
	rc, _ := run("rollback-altboot")
	mark("rollback-altboot rc=%d", rc)
	// The scenario's step: with the payload disk attached, update once (the marker on resin-data keeps a
	// later boot, on either slot, from updating again), leaving a file there to find intact afterwards.
	if src := payloadDisk(); src != "" {
		if _, err := os.Stat("/mnt/data/e2e-updated"); errors.Is(err, os.ErrNotExist) {
			must(os.WriteFile("/mnt/data/e2e-keep", []byte("written on "+osVersion()+" before the update\n"), 0o644))
			must(os.WriteFile("/mnt/data/e2e-updated", nil, 0o644))
			unix.Sync()
			mark("update start source=%s", src)
			rc, _ := run("update", "--quiet", src)
			mark("update done rc=%d", rc)
			halt(unix.LINUX_REBOOT_CMD_RESTART)
		}
	}
	rc, out := run("health", "--json")
	var res struct {
		Step *struct{ Reboot bool }
	}
	json.Unmarshal(out, &res)
	reboot := res.Step != nil && res.Step.Reboot
	mark("health rc=%d reboot=%v", rc, reboot)
	rc, _ = run("status")
	mark("status rc=%d", rc)
	if reboot {
		halt(unix.LINUX_REBOOT_CMD_RESTART)
	}
	mark("poweroff slot=%s version=%s", slot, osVersion())
	halt(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// shell runs /bin/sh (u-root's gosh, which tests/e2e/shell.sh installs for make e2e-shell) on the console
// and powers off when it ends.
func shell() {
	mark("shell: hostos is /usr/bin/hostos, the boot, state and data partitions are under /mnt; exit powers off")
	cmd := exec.Command("/bin/sh")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Dir = "/"
	if err := cmd.Run(); err != nil {
		mark("shell: %v", err)
	}
	mark("poweroff slot=%s version=%s", map[string]string{"2": "A", "3": "B"}[cmdlineParam("hostos.root")], osVersion())
	halt(unix.LINUX_REBOOT_CMD_POWER_OFF)
}
