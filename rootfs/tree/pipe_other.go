//go:build !linux

package tree

import (
	"errors"
	"io"
	"os/exec"
)

// startTool starts cmd, a decompressing program, writing to a pipe, and returns the reader of its
// output. end is called once at the end of the output and tells whether the program failed.
func startTool(cmd *exec.Cmd, end func() error) (io.ReadCloser, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &toolChecked{r: out, end: end}, nil
}

// toolChecked turns a failing run of the program into a read error at the end of its output.
type toolChecked struct {
	r    io.ReadCloser
	end  func() error
	done bool
}

func (c *toolChecked) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if errors.Is(err, io.EOF) && !c.done {
		c.done = true
		if werr := c.end(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// Close leaves the pipe to the program's Wait, which closes it.
func (c *toolChecked) Close() error { return nil }
