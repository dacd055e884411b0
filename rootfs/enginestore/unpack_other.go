//go:build !linux

package enginestore

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/hostos/hostos/rootfs/tree"
)

// unpacker writes layer directories on Linux only: whiteouts, owners and xattrs as the engine's overlay2
// driver leaves them need Linux's *at system calls. Elsewhere newUnpacker fails before anything is read.
type unpacker struct{}

func newUnpacker(dir, _ string) (*unpacker, error) {
	return nil, fmt.Errorf("layer directory %s: writing an engine store needs Linux, not %s: %w", dir, runtime.GOOS, errors.ErrUnsupported)
}

func (*unpacker) add(*tar.Header, io.Reader) error     { return errors.ErrUnsupported }
func (*unpacker) finish() ([]tree.Fixup, int64, error) { return nil, 0, errors.ErrUnsupported }
func (*unpacker) close()                               {}
