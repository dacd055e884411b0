package tree

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// pipeSize is the buffer asked for the pipe from a decompressing program: a megabyte (Linux's default
// most for an unprivileged process) instead of 64 KiB takes the reader's wake-ups, each a few system
// calls, down sixteenfold, which is most of the cost of reading 300 MB through the pipe on a machine
// where system calls are dear.
const pipeSize = 1 << 20

// growPipe enlarges the buffer of the pipe r reads, when it is one; a refusal leaves it as it was.
func growPipe(r io.Reader) {
	f, ok := r.(*os.File)
	if !ok {
		return
	}
	if sc, err := f.SyscallConn(); err == nil {
		sc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
	}
}
