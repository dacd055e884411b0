//go:build !linux

package health

import (
	"context"
	"fmt"
	"os/exec"
)

// attempt runs the command once with stdout and stderr captured. It returns the tail of the output and nil
// when the command exited 0. Health checks run on the device, under Linux, where the command's whole
// process group is killed (attempt_linux.go); here only the command itself is killed on timeout.
func attempt(ctx context.Context, c Check) (string, error) {
	actx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var out tail
	cmd := exec.CommandContext(actx, c.Command[0], c.Command[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = outputGrace
	err := cmd.Run()
	switch {
	case actx.Err() != nil && ctx.Err() == nil:
		return out.String(), fmt.Errorf("timed out after %s, process killed", c.Timeout)
	case ctx.Err() != nil:
		return out.String(), ctx.Err()
	case err != nil:
		return out.String(), err
	}
	return out.String(), nil
}
