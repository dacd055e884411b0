//go:build linux

// Package enginetest starts Debian's dockerd on a data root for tests that judge an engine store with the real engine.
package enginetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostos/hostos/tests/testtool"
)

// Engine is a dockerd started by a test on a data root, with its own socket, exec root and client config.
type Engine struct {
	t      *testing.T
	client string
	sock   string
	log    string
	config string
	cmd    *exec.Cmd
	done   chan error
	stop   func()
}

// Need checks what starting a real engine takes (root, dockerd, the 20.10 client, overlay, e2fsprogs)
// and returns dockerd's and the client's paths; a missing part skips locally and fails in CI.
func Need(t *testing.T) (dockerd, client string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testtool.Missing(t, "starting dockerd on a loop-mounted image needs root")
	}
	dockerd = testtool.Need(t, "dockerd")
	// Debian's 20.10 client, when a newer one shadows it on the PATH.
	client = "/usr/bin/docker"
	if _, err := os.Stat(client); err != nil {
		client = testtool.Need(t, "docker")
	}
	for _, tool := range []string{"mount", "umount", "e2fsck", "debugfs"} {
		testtool.Need(t, tool)
	}
	fsys, err := os.ReadFile("/proc/filesystems")
	if err != nil || !bytes.Contains(fsys, []byte("\toverlay\n")) {
		testtool.Missing(t, "the kernel has no overlay filesystem")
	}
	return dockerd, client
}

// UnmountUnder unmounts every mount at or below each of dirs, deepest first.
func UnmountUnder(t *testing.T, dirs ...string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := strings.ReplaceAll(fields[4], `\040`, " ")
		for _, d := range dirs {
			if p == d || strings.HasPrefix(p, d+"/") {
				points = append(points, p)
			}
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		if err := unix.Unmount(p, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				t.Errorf("unmount %s: %v", p, err)
			}
		}
	}
}

// Mount loop-mounts the ext4 filesystem at offset off of img read-write; the test unmounts it at the end.
func Mount(t *testing.T, img string, off int64) string {
	t.Helper()
	mnt := t.TempDir()
	out, err := exec.Command("mount", "-t", "ext4", "-o", fmt.Sprintf("loop,offset=%d", off), img, mnt).CombinedOutput()
	if err != nil {
		testtool.Missing(t, "loop mount: %v: %s", err, out)
	}
	t.Cleanup(func() { UnmountUnder(t, mnt) })
	return mnt
}

// Start starts dockerd on dataRoot and returns once it answers; the test stops it at the end.
func Start(t *testing.T, dockerd, client, dataRoot string) *Engine {
	t.Helper()
	// A short directory: socket paths are limited to 108 bytes.
	run, err := os.MkdirTemp("", "hostos-engine-")
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{t: t, client: client, sock: filepath.Join(run, "d.sock"), log: filepath.Join(run, "dockerd.log"),
		config: filepath.Join(run, "client"), done: make(chan error, 1)}
	if err := os.WriteFile(filepath.Join(run, "daemon.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(e.log)
	if err != nil {
		t.Fatal(err)
	}
	e.cmd = exec.Command(dockerd, "--data-root", dataRoot, "-s", "overlay2", "--bridge", "none", "--iptables=false",
		"--ip6tables=false", "--exec-root", filepath.Join(run, "exec"), "-H", "unix://"+e.sock,
		"--pidfile", filepath.Join(run, "pid"), "--config-file", filepath.Join(run, "daemon.json"), "-D")
	e.cmd.Stdout, e.cmd.Stderr = logFile, logFile
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	go func() { e.done <- e.cmd.Wait(); logFile.Close() }()
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(30 * time.Second):
			// Only the process group this test started.
			syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
			<-e.done
		}
		UnmountUnder(t, dataRoot, run)
	}
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			if b, err := os.ReadFile(e.log); err == nil {
				t.Logf("dockerd log (end):\n%s", tail(string(b), 40))
			}
		}
		os.RemoveAll(run)
	})
	for i := 0; ; i++ {
		if _, err := e.Docker("version"); err == nil {
			break
		}
		select {
		case err := <-e.done:
			b, _ := os.ReadFile(e.log)
			t.Fatalf("dockerd exited: %v:\n%s", err, tail(string(b), 30))
		case <-time.After(250 * time.Millisecond):
		}
		if i > 240 {
			t.Fatal("dockerd did not answer within a minute")
		}
	}
	return e
}

// Host is the engine's address as DOCKER_HOST names it.
func (e *Engine) Host() string { return "unix://" + e.sock }

// Docker runs the client against the engine.
func (e *Engine) Docker(args ...string) (string, error) {
	cmd := exec.Command(e.client, append([]string{"-H", "unix://" + e.sock}, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+e.config)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// Must runs the client and fails the test on an error.
func (e *Engine) Must(args ...string) string {
	e.t.Helper()
	out, err := e.Docker(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// Stop stops the engine, unmounts what it left mounted and fails the test when its log shows a store it
// could not read.
func (e *Engine) Stop() {
	e.t.Helper()
	e.stop()
	b, err := os.ReadFile(e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, bad := range []string{"Failed to load layer", "layer does not exist", "not restoring image"} {
		if bytes.Contains(b, []byte(bad)) {
			e.t.Errorf("dockerd log shows %q:\n%s", bad, tail(string(b), 40))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
