package disk

import (
	"fmt"
	"io"
	"os"
)

// ReadInput reads a small input file (a spec, a config.json, a key, a keyfile, a compose file) whole,
// refusing anything but a regular file (a FIFO, a device, a socket, a directory) without blocking on it,
// and anything larger than limit bytes, before reading: /dev/zero or an endless FIFO cannot grow memory or
// hold the caller. what names the input in errors ("--splash", "config.json").
func ReadInput(path, what string, limit int64) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked on the open file.
	f, err := os.OpenFile(path, os.O_RDONLY|openNoBlock, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err) // *PathError names the file
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s: not a regular file", what, path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s %s: %d bytes, more than the %s allowed", what, path, fi.Size(), SizeText(limit))
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s %s: more than the %s allowed", what, path, SizeText(limit))
	}
	return b, nil
}

// SizeText writes a size as people do: 16 MiB, 64 KiB, else bytes.
func SizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
