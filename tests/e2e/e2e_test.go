//go:build e2e

// Package e2e boots hostos-built images on real firmware (OVMF), a real GRUB, a real Debian kernel and the
// real hostos binary under QEMU (TCG), and runs the A/B update cycle: healthy update and commit, unhealthy
// update and health rollback, broken init and bootloader fallback, power cuts during the update. Scenarios
// are judged from serial-console markers and the final on-disk state (hostos status --image, debugfs).
//
//	make e2e                                             # everything, dependencies included
//	go test -tags e2e -run TestE2E/healthy ./tests/e2e -v # one scenario
//
// The kernel, GRUB and firmware come from Debian's packages at test time; downloads are cached under
// .cache/e2e. HOSTOS_E2E_KEEP=1 keeps the work directory (images, serial logs) and prints its path.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hostos/hostos/hostapp/bootenv"
)

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	rootMiB  = 48
	// bootTimeout bounds one QEMU run (a few boots under TCG); the scenarios never judge by time.
	bootTimeout = 6 * time.Minute
)

// vmSlots bounds the QEMU runs going at once to one per CPU: the scenarios of both architectures run in
// parallel (each has its own image copy), and each single-vCPU TCG machine keeps a core to itself, so a
// power cut timed from a serial marker lands where it would on an idle machine.
var vmSlots = make(chan struct{}, max(1, runtime.NumCPU()))

var modules = []string{"virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
	"virtio_blk", "crc16", "mbcache", "jbd2", "crc32c_generic", "ext4", "fat", "vfat", "nls_cp437", "nls_ascii",
	"nls_utf8"}

// env is what every scenario of one architecture shares: a built base image (version 1.0.0 on A) and the
// bundles.
type env struct {
	arch               *arch
	repo, work, hostos string            // hostos runs on the host; the guest's own is in the images
	image              string            // base image, copied per scenario
	bundles            map[string]string // name -> raw payload disk file
	dataPart           int               // resin-data's partition number
}

// arch is one machine the suite boots: x86-64 with OVMF and GRUB (GPT), or arm64 with U-Boot (msdos).
type arch struct {
	name       string // GOARCH
	deviceType string
	tools      []string
	files      []string // firmware files that must exist
	dataPart   int
	// bootFiles adds the bootloader's files to deploy and returns the spec's [boot] files.
	bootFiles func(t testing.TB, deploy, kernel string) []string

	once sync.Once
	env  *env
	err  error
}

func run(t testing.TB, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func repoRoot(t testing.TB) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// fetchKernel downloads and unpacks the Debian kernel package linux-image-ARCH depends on (ARCH a Debian
// architecture, amd64 or arm64; a foreign one needs `dpkg --add-architecture`), once per package version,
// under .cache/e2e/kernel/PKG. It returns the unpacked tree and the kernel release.
func fetchKernel(t testing.TB, cache, debArch string) (dir, release string) {
	meta := "linux-image-" + debArch + ":" + debArch
	out := run(t, "", "apt-cache", "depends", meta)
	m := regexp.MustCompile(`Depends: (linux-image-([0-9][^\s:]*-` + debArch + `))\b`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("apt-cache depends %s: no versioned kernel package in\n%s", meta, out)
	}
	pkg, release := m[1], m[2]
	dir = filepath.Join(cache, "kernel", pkg)
	if _, err := os.Stat(filepath.Join(dir, "boot", "vmlinuz-"+release)); err == nil {
		return dir, release
	}
	dl := filepath.Join(cache, "download")
	must(os.MkdirAll(dl, 0o755))
	run(t, dl, "apt-get", "download", pkg+":"+debArch)
	debs, _ := filepath.Glob(filepath.Join(dl, pkg+"_*_"+debArch+".deb"))
	if len(debs) == 0 {
		t.Fatalf("apt-get download %s: no .deb", pkg)
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	must(os.MkdirAll(tmp, 0o755))
	run(t, "", "dpkg-deb", "-x", debs[len(debs)-1], tmp)
	must(os.Rename(tmp, dir))
	for _, d := range debs {
		os.Remove(d)
	}
	return dir, release
}

func writeFile(path, content string, mode os.FileMode) {
	must(os.MkdirAll(filepath.Dir(path), 0o755))
	must(os.WriteFile(path, []byte(content), mode))
}

func copyFile(src, dst string, mode os.FileMode) {
	b, err := os.ReadFile(src)
	must(err)
	writeFile(dst, string(b), mode)
}

// grubCfg is GrubBootCountScript followed by the menu entry: the kernel and initramfs from the boot
// partition, the chosen root by number (hostos.root) on the disk whose partition 1 is the boot file system
// (hostos.boot), and root=UUID= for hostos's check of the running root.
func grubCfg() string {
	return bootenv.GrubBootCountScript + `
set hostos_boot="(${hostos_disk},${hostos_scheme}1)"
probe --set=hostos_boot_uuid --fs-uuid "${hostos_boot}"
set default=0
set timeout=0
menuentry 'hostos' {
	linux ${hostos_boot}/vmlinuz root=UUID=${hostos_root_uuid} hostos.root=${hostos_root_part} hostos.boot=${hostos_boot_uuid} console=ttyS0 panic=1 quiet
	initrd ${hostos_boot}/initrd.img
}
`
}

// rootfs writes a test root filesystem: os-release, hostos, the guest init, a health file.
func rootfs(dir, version, hostos, guest, health string, withInit bool) {
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "mnt/boot", "mnt/state", "mnt/data", "bin"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	writeFile(filepath.Join(dir, "etc/os-release"), fmt.Sprintf("NAME=\"hostos e2e\"\nID=hostos-e2e\nVERSION=%q\nVERSION_ID=%q\nPRETTY_NAME=\"hostos e2e %s\"\n", version, version, version), 0o644)
	copyFile(hostos, filepath.Join(dir, "usr/bin/hostos"), 0o755)
	if withInit {
		copyFile(guest, filepath.Join(dir, "sbin/hostos-init"), 0o755)
	} else {
		must(os.MkdirAll(filepath.Join(dir, "sbin"), 0o755))
	}
	if health != "" {
		writeFile(filepath.Join(dir, "etc/hostos/health.toml"), health, 0o644)
	}
}

const (
	healthOK  = "[[check]]\nname = \"guest\"\ncommand = [\"/sbin/hostos-init\", \"true\"]\n"
	healthBad = "[[check]]\nname = \"guest\"\ncommand = [\"/sbin/hostos-init\", \"false\"]\nretries = 0\n"
)

// amd64 boots OVMF, a standalone GRUB EFI binary running bootenv.GrubBootCountScript, from a GPT image.
var amd64 = &arch{
	name: "amd64", deviceType: "generic-amd64-efi", dataPart: 5,
	tools: []string{"qemu-system-x86_64", "grub-mkimage", "grub-editenv"},
	files: []string{ovmfCode, ovmfVars},
	bootFiles: func(t testing.TB, deploy, kernel string) []string {
		copyFile(kernel, filepath.Join(deploy, "vmlinuz"), 0o644)
		run(t, "", "grub-mkimage", "-O", "x86_64-efi", "-p", "/EFI/BOOT", "-o", filepath.Join(deploy, "BOOTX64.EFI"),
			"part_gpt", "part_msdos", "fat", "ext2", "normal", "configfile", "loadenv", "test", "echo", "linux",
			"search", "search_label", "search_fs_uuid", "regexp", "reboot", "halt", "probe")
		writeFile(filepath.Join(deploy, "grub.cfg"), grubCfg(), 0o644)
		return []string{"BOOTX64.EFI:/EFI/BOOT/BOOTX64.EFI", "grub.cfg:/EFI/BOOT/grub.cfg", "vmlinuz:/vmlinuz", "initrd.img:/initrd.img"}
	},
}

func setup(t testing.TB, a *arch) *env {
	start := time.Now()
	e := &env{arch: a, repo: repoRoot(t), bundles: map[string]string{}, dataPart: a.dataPart}
	for _, tool := range append([]string{"cpio", "debugfs", "mcopy", "mtype", "apt-get", "apt-cache", "dpkg-deb", "timeout", "sfdisk"}, a.tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run scripts/install-deps.sh e2e (make e2e does)", tool)
		}
	}
	for _, f := range a.files {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: run scripts/install-deps.sh e2e", err)
		}
	}
	cache := filepath.Join(e.repo, ".cache", "e2e")
	work, err := os.MkdirTemp("", "hostos-e2e-"+a.name+"-")
	must(err)
	e.work = work
	kdir, release := fetchKernel(t, cache, a.name)

	// Static binaries: hostos for the host, and hostos and the guest init for the guest.
	bin := filepath.Join(work, "bin")
	e.hostos = filepath.Join(bin, "hostos")
	guestHostos := filepath.Join(bin, a.name, "hostos")
	guest := filepath.Join(bin, a.name, "guest")
	for _, b := range []struct{ out, pkg, goarch string }{
		{e.hostos, "./cmd/hostos", runtime.GOARCH}, {guestHostos, "./cmd/hostos", a.name}, {guest, "./tests/e2e/guest", a.name},
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", b.out, b.pkg)
		cmd.Dir = e.repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+b.goarch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s (%s): %v\n%s", b.pkg, b.goarch, err, out)
		}
	}

	// The initramfs: the guest as /init and the modules it loads.
	deploy := filepath.Join(work, "deploy")
	ird := filepath.Join(work, "initramfs")
	for _, d := range []string{"proc", "sys", "dev", "newroot"} {
		must(os.MkdirAll(filepath.Join(ird, d), 0o755))
	}
	copyFile(guest, filepath.Join(ird, "init"), 0o755)
	writeFile(filepath.Join(ird, "lib/modules/release"), release+"\n", 0o644)
	modRoot := filepath.Join(kdir, "lib", "modules", release)
	want := map[string]bool{}
	for _, m := range modules {
		want[m+".ko"] = true
	}
	must(filepath.WalkDir(modRoot, func(p string, d os.DirEntry, err error) error {
		if err == nil && want[d.Name()] {
			rel, _ := filepath.Rel(kdir, p)
			copyFile(p, filepath.Join(ird, rel), 0o644)
		}
		return err
	}))
	must(os.MkdirAll(deploy, 0o755))
	cpio := exec.Command("sh", "-c", "find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 > "+filepath.Join(deploy, "initrd.img"))
	cpio.Dir = ird
	if b, err := cpio.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v\n%s", err, b)
	}
	files := a.bootFiles(t, deploy, filepath.Join(kdir, "boot", "vmlinuz-"+release))
	quoted := make([]string, len(files))
	for i, f := range files {
		quoted[i] = fmt.Sprintf("%q", f)
	}

	// Version 1 image; version 2 bundles (healthy, unhealthy) and version 3 (no init).
	rootfs(filepath.Join(work, "rootfs-1"), "1.0.0", guestHostos, guest, healthOK, true)
	spec := fmt.Sprintf(`device_type = %q
version = "1.0.0"

[sizes]
boot = 64
root = %d
state = 16
data = 32

[rootfs]
source = "rootfs-1"

[boot]
deploy_dir = "deploy"
files = [%s]
`, a.deviceType, rootMiB, strings.Join(quoted, ", "))
	writeFile(filepath.Join(work, "spec.toml"), spec, 0o644)
	e.image = filepath.Join(work, "base.img")
	run(t, work, e.hostos, "build", "--spec", "spec.toml", "-o", e.image)
	for _, b := range []struct {
		name, version, health string
		init                  bool
	}{{"healthy", "2.0.0", healthOK, true}, {"unhealthy", "2.0.0", healthBad, true}, {"noinit", "3.0.0", healthOK, false}} {
		dir := filepath.Join(work, "rootfs-"+b.name)
		rootfs(dir, b.version, guestHostos, guest, b.health, b.init)
		out := filepath.Join(work, b.name+".bundle")
		run(t, work, e.hostos, "bundle", "create", "--quiet", "--rootfs", dir, "--device-type", a.deviceType,
			"--version", b.version, "--root-size", fmt.Sprint(rootMiB), "-o", out)
		// A raw disk holds whole sectors.
		fi, err := os.Stat(out)
		must(err)
		must(os.Truncate(out, (fi.Size()+4095)/4096*4096))
		e.bundles[b.name] = out
	}
	t.Logf("setup %s: kernel %s, image and bundles built in %s (work dir %s)", a.name, release, time.Since(start).Round(time.Second), work)
	return e
}

func getEnv(t *testing.T, a *arch) *env {
	a.once.Do(func() {
		ok := false
		defer func() {
			if !ok && a.err == nil {
				a.err = fmt.Errorf("setup %s failed", a.name)
			}
		}()
		a.env = setup(t, a)
		ok = true
	})
	if a.err != nil {
		t.Fatal(a.err)
	}
	return a.env
}

// vm is one scenario's machine: its own image copy, firmware variables and serial log.
type vm struct {
	t                *testing.T
	e                *env
	dir, image, vars string
	log              string
	runs             int
	noReboot         bool // QEMU exits when the guest resets (U-Boot-only runs)
}

func newVM(t *testing.T, e *env) *vm {
	dir := filepath.Join(e.work, strings.ReplaceAll(t.Name(), "/", "_"))
	must(os.MkdirAll(dir, 0o755))
	v := &vm{t: t, e: e, dir: dir, image: filepath.Join(dir, "disk.img"), vars: filepath.Join(dir, "vars.fd"),
		log: filepath.Join(dir, "serial.log")}
	run(t, "", "cp", "--sparse=always", e.image, v.image)
	if v.e.arch == amd64 {
		copyFile(ovmfVars, v.vars, 0o644)
	}
	t.Cleanup(func() {
		if t.Failed() {
			v.dump()
		}
	})
	return v
}

// boot runs QEMU until the guest powers off (or kill says to stop it), appending the serial output to
// the scenario's log. payload names a bundle attached as a raw disk with serial "payload".
func (v *vm) boot(payload string, kill func(serial []byte) bool) (runMarkers []string) {
	v.t.Helper()
	v.runs++
	runLog := filepath.Join(v.dir, fmt.Sprintf("serial-%d.log", v.runs))
	args := []string{"--signal=KILL", fmt.Sprint(int(bootTimeout.Seconds()))}
	if v.e.arch == amd64 {
		args = append(args, "qemu-system-x86_64", "-machine", "q35,accel=tcg",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+v.vars)
	} else {
		args = append(args, "qemu-system-aarch64", "-machine", "virt", "-cpu", "cortex-a57", "-bios", ubootBin)
	}
	if v.noReboot {
		args = append(args, "-no-reboot")
	}
	args = append(args, "-smp", "1", "-m", "1024", "-nodefaults", "-display", "none", "-serial", "file:"+runLog,
		"-drive", "file="+v.image+",format=raw,if=none,id=sys", "-device", "virtio-blk-pci,drive=sys,serial=system")
	if payload != "" {
		args = append(args, "-drive", "file="+v.e.bundles[payload]+",format=raw,if=none,id=upd,readonly=on",
			"-device", "virtio-blk-pci,drive=upd,serial=payload")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, "timeout", args...)
	// Its own process group: a power cut kills timeout and QEMU together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	queued := time.Now()
	vmSlots <- struct{}{}
	defer func() { <-vmSlots }()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		v.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	killed := false
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case err = <-done:
			break loop
		case <-tick.C:
			if kill != nil && !killed {
				b, _ := os.ReadFile(runLog)
				if kill(b) {
					killed = true
					cancel()
				}
			}
		}
	}
	b, _ := os.ReadFile(runLog)
	f, ferr := os.OpenFile(v.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(ferr)
	f.Write(b)
	f.Close()
	v.t.Logf("qemu run %d: %s%s (waited %s for a CPU)", v.runs, time.Since(start).Round(100*time.Millisecond),
		map[bool]string{true: " (power cut)"}[killed], start.Sub(queued).Round(100*time.Millisecond))
	if !killed && err != nil {
		v.t.Fatalf("qemu run %d: %v (timeout %s?)\n%s", v.runs, err, bootTimeout, stderr.Bytes())
	}
	if kill != nil && !killed {
		v.t.Fatalf("qemu run %d: the guest powered off before the power cut", v.runs)
	}
	return parseMarkers(b)
}

// markers are the HOSTOS-E2E lines of the whole log, in order, without the prefix.
func (v *vm) markers() []string {
	b, _ := os.ReadFile(v.log)
	return parseMarkers(b)
}

func parseMarkers(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if _, m, ok := strings.Cut(sc.Text(), "HOSTOS-E2E "); ok {
			out = append(out, strings.TrimSpace(m))
		}
	}
	return out
}

// expect checks that the markers contain want as a subsequence, each a prefix of a marker.
func (v *vm) expect(want ...string) {
	v.t.Helper()
	got := v.markers()
	i := 0
	for _, m := range got {
		if i < len(want) && strings.HasPrefix(m, want[i]) {
			i++
		}
	}
	if i < len(want) {
		v.t.Fatalf("serial markers: missing %q (in order %q)\ngot:\n  %s", want[i], want, strings.Join(got, "\n  "))
	}
}

type status struct {
	Booted     string `json:"booted"`
	Bootloader struct {
		Root             string `json:"root"`
		UpgradeAvailable bool   `json:"upgrade_available"`
		BootCount        int    `json:"bootcount"`
	} `json:"bootloader"`
	Pending     bool              `json:"pending"`
	Versions    map[string]string `json:"versions"`
	Breadcrumbs []string          `json:"breadcrumbs"`
	raw         string
}

func (v *vm) status() status {
	v.t.Helper()
	out := run(v.t, "", v.e.hostos, "status", "--image", v.image, "--json")
	var s status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		v.t.Fatalf("hostos status --json: %v\n%s", err, out)
	}
	s.raw = out
	return s
}

// partOffset is the byte offset of the partition with the given number, from hostos inspect.
func (v *vm) partOffset(n int) int64 {
	v.t.Helper()
	out := run(v.t, "", "sfdisk", "--json", v.image)
	var pt struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Node  string `json:"node"`
				Start int64  `json:"start"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	must(json.Unmarshal([]byte(out), &pt))
	ss := pt.PartitionTable.SectorSize
	if ss == 0 {
		ss = 512
	}
	for _, p := range pt.PartitionTable.Partitions {
		if strings.HasSuffix(p.Node, fmt.Sprint(n)) && !strings.HasSuffix(p.Node, fmt.Sprint(10+n)) {
			return p.Start * ss
		}
	}
	v.t.Fatalf("no partition %d in %s", n, out)
	return 0
}

// dataFile reads a file from resin-data with debugfs.
func (v *vm) dataFile(name string) string {
	cmd := exec.Command("debugfs", "-R", "cat /"+name, fmt.Sprintf("%s?offset=%d", v.image, v.partOffset(v.e.dataPart)))
	out, _ := cmd.Output()
	return string(out)
}

// grubenv lists the bootloader variables of the image's /grub/grubenv.
func (v *vm) grubenv() string {
	env := filepath.Join(v.dir, "grubenv")
	os.Remove(env)
	img := fmt.Sprintf("%s@@%d", v.image, v.partOffset(1))
	if b, err := exec.Command("mcopy", "-n", "-i", img, "::/grub/grubenv", env).CombinedOutput(); err != nil {
		return fmt.Sprintf("mcopy: %v %s", err, b)
	}
	b, err := exec.Command("grub-editenv", env, "list").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("grub-editenv: %v %s", err, b)
	}
	return string(b)
}

func (v *vm) dump() {
	b, _ := os.ReadFile(v.log)
	lines := strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n")
	if len(lines) > 50 {
		lines = lines[len(lines)-50:]
	}
	v.t.Logf("last 50 serial lines (%s):\n%s", v.log, strings.Join(lines, "\n"))
	if v.e.arch == amd64 {
		v.t.Logf("grubenv:\n%s", v.grubenv())
	} else {
		for _, f := range []string{"resinOS_uEnv.txt", "bootcount.env"} {
			c, _ := v.bootFile(f)
			v.t.Logf("%s: %q", f, c)
		}
	}
	if out, err := exec.Command(v.e.hostos, "status", "--image", v.image).CombinedOutput(); err == nil || len(out) > 0 {
		v.t.Logf("hostos status --image:\n%s", out)
	}
}

func (v *vm) wantState(booted, version string, crumbs ...string) status {
	v.t.Helper()
	s := v.status()
	if s.Booted != booted || s.Versions[booted] != version || s.Pending || s.Bootloader.UpgradeAvailable {
		v.t.Fatalf("on-disk state: want slot %s version %s committed, got\n%s", booted, version, s.raw)
	}
	if fmt.Sprint(s.Breadcrumbs) != fmt.Sprint(append([]string{}, crumbs...)) {
		v.t.Fatalf("breadcrumbs: want %q, got %q", crumbs, s.Breadcrumbs)
	}
	return s
}

// TestE2E runs the scenarios on both machines: TestE2E/amd64/... (OVMF, GRUB) and TestE2E/arm64/... (U-Boot).
func TestE2E(t *testing.T) {
	for _, a := range []*arch{amd64, arm64} {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			scenarios(t, a)
		})
	}
}

func scenarios(t *testing.T, a *arch) {
	e := getEnv(t, a)
	if os.Getenv("HOSTOS_E2E_KEEP") != "" {
		t.Logf("work directory kept: %s", e.work)
	} else {
		t.Cleanup(func() {
			if !t.Failed() {
				os.RemoveAll(e.work)
			}
		})
	}
	// Every scenario runs in parallel with the others; vmSlots keeps the machines to one per CPU.
	timed := func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		t.Cleanup(func() { t.Logf("wall time %s", time.Since(start).Round(time.Second)) })
	}

	if a == arm64 {
		t.Run("bootsim", func(t *testing.T) {
			timed(t)
			bootsimAgainstUBoot(t, e)
		})
	}

	t.Run("boot", func(t *testing.T) {
		timed(t)
		v := newVM(t, e)
		v.boot("", nil)
		v.expect("initramfs root=2", "booted slot=A version=1.0.0", "rollback-altboot rc=0", "health rc=0", "poweroff slot=A version=1.0.0")
		v.wantState("A", "1.0.0")
		v.wantUBoot([]string{"root=2 bootcount=0 upgrade_available=0"}, "2", "0", "0")
	})

	t.Run("healthy", func(t *testing.T) {
		timed(t)
		v := newVM(t, e)
		v.boot("healthy", nil)
		v.expect("booted slot=A version=1.0.0", "update start", "update done rc=0",
			"booted slot=B version=2.0.0", "health rc=0 reboot=false", "poweroff slot=B version=2.0.0")
		v.wantState("B", "2.0.0")
		v.wantUBoot([]string{"root=2 bootcount=0 upgrade_available=0", "root=3 bootcount=1 upgrade_available=1"}, "3", "0", "0")
		if got := v.dataFile("e2e-keep"); got != "written on 1.0.0 before the update\n" {
			t.Fatalf("resin-data file before the update: got %q", got)
		}
	})

	t.Run("unhealthy", func(t *testing.T) {
		timed(t)
		v := newVM(t, e)
		v.boot("unhealthy", nil)
		v.expect("booted slot=A version=1.0.0", "update done rc=0", "booted slot=B version=2.0.0",
			"health rc=0 reboot=true", "booted slot=A version=1.0.0", "poweroff slot=A version=1.0.0")
		v.wantState("A", "1.0.0", "rollback-health-triggered")
		v.wantUBoot([]string{"root=2 bootcount=0 upgrade_available=0", "root=3 bootcount=1 upgrade_available=1",
			"root=2 bootcount=0 upgrade_available=0"}, "2", "0", "0")
	})

	t.Run("broken-init", func(t *testing.T) {
		timed(t)
		v := newVM(t, e)
		v.boot("noinit", nil)
		v.expect("booted slot=A version=1.0.0", "update done rc=0", "initramfs root=3", "fatal: exec /sbin/hostos-init",
			"initramfs root=2", "booted slot=A version=1.0.0", "rollback-altboot rc=0", "poweroff slot=A version=1.0.0")
		v.wantState("A", "1.0.0", "rollback-altboot-triggered")
		// U-Boot counts three boots of B, and past os_bc_lim=3 boots A.
		v.wantUBoot([]string{"root=2 bootcount=0 upgrade_available=0", "root=3 bootcount=1 upgrade_available=1",
			"root=3 bootcount=2 upgrade_available=1", "root=3 bootcount=3 upgrade_available=1",
			"root=2 bootcount=4 upgrade_available=1"}, "2", "0", "0")
	})

	// Power cuts: QEMU is killed at points of the in-guest update (hostos prints nothing until it is done,
	// so the points are delays after the guest's "update start" marker; the update takes ~5 s under TCG,
	// and the log says which marker the cut came after); the next boot (without the payload) must come up
	// on a complete system, A with 1.0.0 or B with 2.0.0, and end committed.
	type cutPoint struct {
		name   string
		marker string
		delay  time.Duration
	}
	cuts := []cutPoint{{"start", "update start", 0}, {"1s", "update start", time.Second}, {"2s", "update start", 2 * time.Second},
		{"4s", "update start", 4 * time.Second}, {"done", "update done", 0}}
	if a == arm64 {
		// TCG runs arm64 slower: fewer points, spread over the longer update.
		cuts = []cutPoint{{"start", "update start", 0}, {"3s", "update start", 3 * time.Second}, {"done", "update done", 0}}
	}
	for _, cut := range cuts {
		t.Run("power-cut/"+cut.name, func(t *testing.T) {
			timed(t)
			v := newVM(t, e)
			var seen time.Time
			before := v.boot("healthy", func(serial []byte) bool {
				if seen.IsZero() {
					for _, m := range parseMarkers(serial) {
						if strings.HasPrefix(m, cut.marker) {
							seen = time.Now()
						}
					}
					return false
				}
				return time.Since(seen) >= cut.delay
			})
			for _, m := range before {
				if strings.HasPrefix(m, "booted slot=B") || strings.HasPrefix(m, "poweroff") {
					t.Fatalf("the power cut came too late: %q", before)
				}
			}
			t.Logf("power cut after the marker %q", before[len(before)-1])
			if a == arm64 {
				// Between the boots: what the FAT holds must decode, and name a root.
				env := v.ubootEnv()
				t.Logf("after the cut: resinOS_uEnv.txt and bootcount.env say %v", env)
			}
			v.boot("", nil)
			got := v.markers()
			var last string
			for _, m := range got {
				if strings.HasPrefix(m, "booted ") {
					last = m
				}
			}
			switch last {
			case "booted slot=A version=1.0.0":
				v.expect("poweroff slot=A version=1.0.0")
				v.wantState("A", "1.0.0")
			case "booted slot=B version=2.0.0":
				v.expect("poweroff slot=B version=2.0.0")
				v.wantState("B", "2.0.0")
			default:
				t.Fatalf("after the power cut: last boot %q, markers:\n  %s", last, strings.Join(got, "\n  "))
			}
			t.Logf("after the power cut at %q+%s: %s", cut.marker, cut.delay, last)
		})
	}
}
