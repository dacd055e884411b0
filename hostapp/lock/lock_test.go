//go:build unix

package lock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostos/hostos/tests/testtool"
)

// holdEnv makes the test binary a lock holder: it acquires the lock named by the variable, says "held" and
// keeps the lock until its stdin closes.
const holdEnv = "HOSTOS_LOCK_TEST_HOLD"

func TestMain(m *testing.M) {
	if path := os.Getenv(holdEnv); path != "" {
		l, err := Acquire(path)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("held")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		if os.Getenv(holdEnv+"_RELEASE") != "" {
			_ = l.Release()
		}
		os.Exit(0) // without Release: the kernel drops the lock, the PID stays in the file
	}
	os.Exit(m.Run())
}

// holdInChild acquires path in a child process; stop ends the child and waits for it.
func holdInChild(t *testing.T, path string, release bool) (pid int, stop func()) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+path)
	if release {
		cmd.Env = append(cmd.Env, holdEnv+"_RELEASE=1")
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(outPipe).ReadString('\n')
	if strings.TrimSpace(line) != "held" {
		in.Close()
		_ = cmd.Wait()
		t.Fatalf("holder: %q", line)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("holder: %v", err)
		}
	}
	t.Cleanup(stop)
	return cmd.Process.Pid, stop
}

func TestAcquireRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hostos.lock")
	l, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file mode %v, want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want our pid %d", b, os.Getpid())
	}
	// flock locks belong to open files: a second Acquire in this process conflicts too.
	if _, err := Acquire(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Acquire: %v, want ErrLocked", err)
	} else if !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file and our pid", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Errorf("released lock file still holds %q", b)
	}
	l2, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	_ = l2.Release()
}

func TestAcquireHeldByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hostos.lock")
	pid, stop := holdInChild(t, path, false)
	_, err := Acquire(path)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Acquire: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("(pid %d)", pid)) {
		t.Fatalf("error %q does not name holder pid %d", err, pid)
	}
	stop()
	// The holder died without releasing: the kernel dropped its lock, its stale PID does not matter.
	l, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after the holder exited: %v", err)
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want our pid", b)
	}
	_ = l.Release()
}

func TestAcquireHeldByFlockTool(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hostos.lock")
	holdWithFlock(t, path, "2")
	_, err := Acquire(path)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Acquire: %v, want ErrLocked", err)
	}
	if strings.Contains(err.Error(), "pid") {
		t.Errorf("error %q names a pid, but the flock tool records none", err)
	}
}

// holdWithFlock runs util-linux `flock FILE sleep secs` and returns once the file is locked, with a channel
// closed when the command has exited; the holder's process group is killed at cleanup.
func holdWithFlock(t *testing.T, path, secs string) <-chan struct{} {
	t.Helper()
	tool := testtool.Need(t, "flock")
	cmd := exec.Command(tool, path, "sleep", secs)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if locked, _ := isLocked(path); locked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("flock did not take the lock")
		}
	}
	return exited
}

func TestWaitAppLocks(t *testing.T) {
	dir := t.TempDir()
	held := filepath.Join(dir, "1", "main", "updates.lock")
	idle := filepath.Join(dir, "2", "worker", "updates.lock")
	for _, p := range []string{held, idle} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pattern := filepath.Join(dir, "*", "*", "updates.lock")

	// Files that exist but are not locked do not block.
	if err := WaitAppLocks(context.Background(), pattern, time.Hour, nil); err != nil {
		t.Fatalf("unlocked files: %v", err)
	}
	// Nor does a pattern matching nothing.
	if err := WaitAppLocks(context.Background(), filepath.Join(dir, "none", "*.lock"), time.Hour, nil); err != nil {
		t.Fatalf("no files: %v", err)
	}

	exited := holdWithFlock(t, held, "1")
	var lines []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := WaitAppLocks(ctx, pattern, 20*time.Millisecond, func(s string) { lines = append(lines, s) }); err != nil {
		t.Fatalf("WaitAppLocks: %v", err)
	}
	// It returned only once the holder had let go: the holder has exited (or is exiting) by now.
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("WaitAppLocks returned while the holder was still running")
	}
	if len(lines) != 2 || !strings.Contains(lines[0], held) || strings.Contains(lines[0], idle) {
		t.Fatalf("log %q: want the held lock named once, then the release", lines)
	}
}

func TestWaitAppLocksTimeoutNamesTheLock(t *testing.T) {
	dir := t.TempDir()
	held := filepath.Join(dir, "1", "main", "updates.lock")
	if err := os.MkdirAll(filepath.Dir(held), 0o755); err != nil {
		t.Fatal(err)
	}
	holdWithFlock(t, held, "30")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := WaitAppLocks(ctx, filepath.Join(dir, "*", "*", "updates.lock"), 20*time.Millisecond, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), held) {
		t.Fatalf("error %v, want context.DeadlineExceeded naming %s", err, held)
	}
}

func TestWaitAppLocksSeesOurOwnLockType(t *testing.T) {
	// A lock taken with Acquire in another process is an exclusive flock: WaitAppLocks sees it as held.
	path := filepath.Join(t.TempDir(), "updates.lock")
	_, stop := holdInChild(t, path, true)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := WaitAppLocks(ctx, path, 10*time.Millisecond, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitAppLocks: %v, want a timeout", err)
	}
	stop()
	if err := WaitAppLocks(context.Background(), path, 10*time.Millisecond, nil); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestWaitAppLocksBadArguments(t *testing.T) {
	if err := WaitAppLocks(context.Background(), "[", time.Second, nil); err == nil {
		t.Error("bad pattern accepted")
	}
	if err := WaitAppLocks(context.Background(), "*", 0, nil); err == nil {
		t.Error("zero interval accepted")
	}
}
