package health

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// attempt runs the command once in its own process group with stdout and stderr captured. It returns the tail
// of the output and nil when the command exited 0. Whatever is left of the group when the command exits or
// times out is killed.
func attempt(ctx context.Context, c Check) (string, error) {
	actx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", fmt.Errorf("output pipe: %w", err)
	}
	defer pr.Close()
	cmd := exec.Command(c.Command[0], c.Command[1:]...)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return "", err
	}
	pgid := cmd.Process.Pid

	var out tail
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(&out, pr)
		close(copied)
	}()
	// Wait for the leader to exit without reaping it, so its PID, which names the group, stays taken until the
	// group has been killed.
	exited := make(chan struct{})
	go func() {
		var info unix.Siginfo
		for unix.Waitid(unix.P_PID, pgid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
		close(exited)
	}()

	timedOut := false
	select {
	case <-exited:
	case <-actx.Done():
		timedOut = true
	}
	_ = unix.Kill(-pgid, unix.SIGKILL)
	<-exited
	werr := cmd.Wait()
	select {
	case <-copied:
	case <-time.After(outputGrace):
		pr.Close()
		<-copied
	}

	switch {
	case timedOut && ctx.Err() == nil:
		return out.String(), fmt.Errorf("timed out after %s, process group killed", c.Timeout)
	case timedOut:
		return out.String(), ctx.Err()
	case werr != nil:
		return out.String(), werr // "exit status 1", "signal: segmentation fault"
	}
	return out.String(), nil
}
