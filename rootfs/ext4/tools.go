package ext4

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
)

// ErrToolMissing marks an e2fsprogs program (mkfs.ext4, debugfs, e2fsck, resize2fs) that is not installed.
var ErrToolMissing = errors.New("tool not installed")

// e2fsprogs returns the path of the e2fsprogs program name, or an error naming it and saying how to get it
// on this system.
func e2fsprogs(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	var how string
	switch runtime.GOOS {
	case "linux":
		how = "install e2fsprogs"
	case "darwin":
		how = "on darwin install e2fsprogs (brew install e2fsprogs) and put its sbin directory on PATH"
	case "windows":
		how = "e2fsprogs does not run on windows: run this command under WSL or on Linux (configure, config, inspect and flash need no tool)"
	default:
		how = "install e2fsprogs (on " + runtime.GOOS + ")"
	}
	return "", fmt.Errorf("%s: %w: %s", name, ErrToolMissing, how)
}
