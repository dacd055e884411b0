//go:build !linux

package tree

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"runtime"
)

// stager extracts archives on Linux only: owners, device nodes and xattrs exact as in the archive need
// Linux's *at system calls. Elsewhere newStager fails, so Stage reports it before reading the archive.
type stager struct {
	layer int
	freed int64
}

func newStager(dir string) (*stager, error) {
	return nil, fmt.Errorf("stage into %s: extracting a root filesystem archive needs Linux, not %s: %w", dir, runtime.GOOS, errors.ErrUnsupported)
}

func (*stager) add(*tar.Header, io.Reader) error { return errors.ErrUnsupported }
func (*stager) whiteout(*tar.Header) error       { return errors.ErrUnsupported }
func (*stager) finish() (*Staged, error)         { return nil, errors.ErrUnsupported }
func (*stager) close()                           {}
