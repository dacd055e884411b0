//go:build !linux

package fat

import (
	"errors"
	"os"
)

// punchHole is not there outside Linux: the caller writes zeros instead.
func punchHole(*os.File, int64, int64) error {
	return errors.New("punching holes is Linux-only")
}
