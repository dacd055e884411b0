package ext4

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Debugfs runs debugfs command batches against the filesystem at a byte offset of an image file.
type Debugfs struct {
	// Image is the image file and Offset the byte offset of the filesystem in it.
	Image  string
	Offset int64
	// Time, when not zero, is the time debugfs takes as now (for new inodes and the superblock write time).
	Time time.Time
}

// Quote makes s one debugfs argument: inside double quotes, a double quote is written twice.
// debugfs reads its commands line by line and cuts a line at a carriage return, so s holds neither.
// Pass paths absolute: debugfs takes a bare "<N>" for inode N.
func Quote(s string) (string, error) {
	if strings.ContainsAny(s, "\n\r\x00") {
		return "", fmt.Errorf("debugfs argument %q: holds a line break or NUL", s)
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`, nil
}

// device is the image argument debugfs and e2fsck take: the unix I/O manager reads ?offset=.
func device(img string, off int64) (string, error) {
	if strings.Contains(img, "?") {
		return "", fmt.Errorf("image %s: a path with '?' cannot carry an offset for e2fsprogs", img)
	}
	if off < 0 {
		return "", fmt.Errorf("image %s: negative offset %d", img, off)
	}
	if off == 0 {
		return img, nil
	}
	return img + "?offset=" + strconv.FormatInt(off, 10), nil
}

func (d Debugfs) env() []string {
	env := append(os.Environ(), "LC_ALL=C")
	if !d.Time.IsZero() {
		env = append(env, "E2FSPROGS_FAKE_TIME="+strconv.FormatInt(d.Time.Unix(), 10))
	}
	return env
}

// run runs a batch; it returns what the commands printed, without debugfs' echo of each command.
func (d Debugfs) run(ctx context.Context, writable bool, cmds []string) (string, error) {
	dev, err := device(d.Image, d.Offset)
	if err != nil {
		return "", err
	}
	script, err := os.CreateTemp("", "hostos-debugfs-*.cmds")
	if err != nil {
		return "", fmt.Errorf("debugfs script: %w", err)
	}
	defer os.Remove(script.Name())
	var buf bytes.Buffer
	for _, c := range cmds {
		if strings.ContainsAny(c, "\n\r") {
			script.Close()
			return "", fmt.Errorf("debugfs command %q: holds a line break", c)
		}
		buf.WriteString(c)
		buf.WriteByte('\n')
	}
	_, err = script.Write(buf.Bytes())
	if cerr := script.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("debugfs script: %w", err)
	}
	args := []string{"-f", script.Name()}
	if writable {
		args = append([]string{"-w"}, args...)
	}
	bin, err := e2fsprogs("debugfs")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, bin, append(args, dev)...)
	cmd.Env = d.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var out strings.Builder
	for _, line := range strings.SplitAfter(stdout.String(), "\n") {
		// The echo of each command, and mknod's report of the inode it took.
		if !strings.HasPrefix(line, "debugfs: ") && !strings.HasPrefix(line, "Allocated inode: ") {
			out.WriteString(line)
		}
	}
	var errs []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if line != "" && !strings.HasPrefix(line, "debugfs ") {
			errs = append(errs, line)
		}
	}
	switch {
	case runErr != nil && ctx.Err() != nil:
		return "", fmt.Errorf("debugfs on %s: %w", dev, ctx.Err())
	case runErr != nil:
		return "", fmt.Errorf("debugfs on %s: %w: %s", dev, runErr, tail(errs))
	case len(errs) > 0:
		return out.String(), fmt.Errorf("debugfs on %s: %s", dev, tail(errs))
	}
	return out.String(), nil
}

// Run runs read-only commands and returns their output.
func (d Debugfs) Run(ctx context.Context, cmds ...string) (string, error) {
	return d.run(ctx, false, cmds)
}

// Apply runs commands that change the filesystem and print nothing when they succeed
// (sif, ssv, mknod, ln, ea_set, ...); any output is reported as an error.
func (d Debugfs) Apply(ctx context.Context, cmds []string) error {
	if len(cmds) == 0 {
		return nil
	}
	out, err := d.run(ctx, true, cmds)
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(out); s != "" {
		return fmt.Errorf("debugfs on %s: %w: %s", d.Image, errCommand, tail(strings.Split(s, "\n")))
	}
	return nil
}

var errCommand = errors.New("command failed")

// tail keeps the last lines of a tool's messages for an error.
func tail(lines []string) string {
	const keep = 8
	if len(lines) > keep {
		lines = append([]string{fmt.Sprintf("(%d more lines)", len(lines)-keep)}, lines[len(lines)-keep:]...)
	}
	return strings.Join(lines, "; ")
}
