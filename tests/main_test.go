// Package tests holds end-to-end tests that run the hostos binary and judge its images with the real tools.
package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/hostos/hostos/tests/testtool"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// hostosBin is the hostos binary under test, built once by TestMain.
var hostosBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hostos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	hostosBin = filepath.Join(dir, "hostos")
	out, err := exec.Command("go", "build", "-o", hostosBin, "../cmd/hostos").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building hostos: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result of running a command.
type result struct {
	stdout, stderr string
	code           int
}

// hostos runs the binary with args; cred, when non-nil and the tests run as root, runs it as that user
// (a test run by an ordinary user is unprivileged already).
func hostos(t testing.TB, env []string, cred *syscall.Credential, args ...string) result {
	t.Helper()
	cmd := exec.Command(hostosBin, args...)
	cmd.Env = append(os.Environ(), env...)
	if cred != nil && os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("hostos %v: %v", args, err)
	}
	return r
}

// mustHostos runs hostos and fails the test on a non-zero exit.
func mustHostos(t testing.TB, env []string, cred *syscall.Credential, args ...string) string {
	t.Helper()
	r := hostos(t, env, cred, args...)
	if r.code != 0 {
		t.Fatalf("hostos %v: exit %d\n%s", args, r.code, r.stderr)
	}
	return r.stdout
}

// run runs a tool and returns its combined output, failing on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sfdiskPart is one partition as `sfdisk --json` reports it.
type sfdiskPart struct {
	Node     string `json:"node"`
	Start    int64  `json:"start"`
	Size     int64  `json:"size"`
	Type     string `json:"type"`
	Bootable bool   `json:"bootable"`
	Name     string `json:"name"`
}

type sfdiskTable struct {
	Label      string       `json:"label"`
	ID         string       `json:"id"`
	SectorSize int          `json:"sectorsize"`
	Partitions []sfdiskPart `json:"partitions"`
}

func sfdiskJSON(t testing.TB, img string) sfdiskTable {
	t.Helper()
	var v struct {
		PT sfdiskTable `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(run(t, testtool.Need(t, "sfdisk"), "--json", img)), &v); err != nil {
		t.Fatal(err)
	}
	return v.PT
}

// blkidAt probes the filesystem at a byte offset of img with `blkid -p -o export`.
func blkidAt(t testing.TB, img string, off, size int64) map[string]string {
	t.Helper()
	out := run(t, testtool.Need(t, "blkid"), "-p", "-o", "export", "-O", fmt.Sprint(off), "-S", fmt.Sprint(size), img)
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// e2fsckCopy runs `e2fsck -fy` on a copy of the ext4 filesystem at off and fails unless it exits 0.
func e2fsckCopy(t testing.TB, img string, off, size int64) {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "fs.img")
	extract(t, img, off, size, cp)
	cmd := exec.Command(testtool.Need(t, "e2fsck"), "-fy", cp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fy at offset %d: %v\n%s", off, err, out)
	}
}

// fsckVfat runs `fsck.vfat -n` on the FAT filesystem at off.
func fsckVfat(t testing.TB, img string, off, size int64) {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "boot.img")
	extract(t, img, off, size, cp)
	out, err := exec.Command(testtool.Need(t, "fsck.vfat"), "-n", cp).CombinedOutput()
	if err != nil {
		t.Fatalf("fsck.vfat -n: %v\n%s", err, out)
	}
}

// extract copies [off, off+size) of img into dst, keeping holes.
func extract(t testing.TB, img string, off, size int64, dst string) {
	t.Helper()
	run(t, "dd", "if="+img, "of="+dst, "bs=1M", "iflag=skip_bytes,count_bytes",
		fmt.Sprintf("skip=%d", off), fmt.Sprintf("count=%d", size), "conv=sparse", "status=none")
}

// oracle returns balena's npm tools driver, or skips (fails in CI) when it is not installed.
func oracle(t testing.TB) string {
	t.Helper()
	p := os.Getenv("HOSTOS_ORACLE")
	if p == "" || !fileExists(p) {
		testtool.Missing(t, "balena oracle not installed (HOSTOS_ORACLE=%q); run make test", p)
	}
	testtool.Need(t, "node")
	return p
}

// runOracle runs balena's tools and returns their stdout (their warnings go to stderr).
func runOracle(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command("node", append([]string{oracle(t)}, args...)...)
	var se bytes.Buffer
	cmd.Stderr = &se
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("balena-oracle.js %s: %v\n%s%s", strings.Join(args, " "), err, out, se.String())
	}
	return string(out)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// nobody is the unprivileged user builds run as, to prove they need no root.
var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

// openDir makes dir and its parent traversable and writable for the unprivileged user.
func openDir(t testing.TB, dir string) {
	t.Helper()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
}
