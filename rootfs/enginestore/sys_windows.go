package enginestore

import (
	"errors"
	"time"
)

// setTimesNoFollow: writing an engine store needs Linux (see unpack_other.go).
func setTimesNoFollow(string, time.Time) error { return errors.ErrUnsupported }
