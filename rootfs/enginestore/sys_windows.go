package enginestore

import (
	"errors"
	"time"
)

// ownedByRoot: Windows files have no Unix owner; writing an engine store needs Linux (see unpack_other.go).
func ownedByRoot(string) (bool, error) { return false, errors.ErrUnsupported }

// setTimesNoFollow: see ownedByRoot.
func setTimesNoFollow(string, time.Time) error { return errors.ErrUnsupported }
