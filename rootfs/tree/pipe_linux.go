package tree

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// pipeSize is the buffer asked for the pipe from a decompressing program: a megabyte (Linux's default
// most for an unprivileged process) instead of 64 KiB takes the reader's wake-ups, each a few system
// calls, down sixteenfold, which is most of the cost of reading 300 MB through the pipe on a machine
// where system calls are dear.
const pipeSize = 1 << 20

// startTool starts cmd, a decompressing program, writing to a pipe of pipeSize, and returns the reader
// of its output. end is called once at the end of the output and tells whether the program failed.
func startTool(cmd *exec.Cmd, end func() error) (io.ReadCloser, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	// A refusal leaves the pipe as it was, only slower.
	unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize)
	w := os.NewFile(uintptr(fds[1]), "|1")
	cmd.Stdout = w
	err := cmd.Start()
	w.Close()
	if err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return &pipeOut{fd: fds[0], end: end}, nil
}

// pipeOut reads a program's output from a blocking pipe, without the Go poller: the reader is the
// only one waiting, and a read that waits costs one system call instead of three. At the end of the
// output it takes the program's verdict.
type pipeOut struct {
	fd  int
	end func() error
	err error
}

func (p *pipeOut) Read(b []byte) (int, error) {
	for p.err == nil && len(b) > 0 {
		n, err := unix.Read(p.fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			p.err = fmt.Errorf("read pipe: %w", err)
		case n == 0:
			p.err = io.EOF
			if err := p.end(); err != nil {
				p.err = err
			}
		default:
			return n, nil
		}
	}
	return 0, p.err
}

// Close closes the pipe; the program then fails writing, if it is still running.
func (p *pipeOut) Close() error {
	if p.fd < 0 {
		return nil
	}
	err := unix.Close(p.fd)
	p.fd = -1
	if p.err == nil {
		p.err = os.ErrClosed
	}
	return err
}
