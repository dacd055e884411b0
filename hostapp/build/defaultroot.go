package build

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"time"
)

// fhsDirs are the directories of the embedded default root filesystem.
var fhsDirs = []string{
	"bin", "boot", "dev", "etc", "etc/hostos", "home", "lib", "mnt", "mnt/boot", "mnt/data", "mnt/state",
	"opt", "proc", "root", "run", "sbin", "srv", "sys", "tmp", "usr", "usr/bin", "usr/lib", "usr/sbin",
	"usr/share", "var", "var/lib", "var/log", "var/tmp",
}

// writeDefaultRoot writes the embedded default root filesystem as a tar archive to w: the FHS
// directories, /etc/os-release and the running hostos binary at /usr/bin/hostos, all owned by root.
func writeDefaultRoot(w io.Writer, osRelease []byte, mtime time.Time) error {
	tw := tar.NewWriter(w)
	hdr := func(name string, mode int64, typ byte, size int64) *tar.Header {
		return &tar.Header{Name: name, Mode: mode, Typeflag: typ, Size: size, ModTime: mtime, Format: tar.FormatPAX}
	}
	for _, d := range fhsDirs {
		mode := int64(0o755)
		switch d {
		case "tmp", "var/tmp":
			mode = 0o1777
		case "root":
			mode = 0o700
		}
		if err := tw.WriteHeader(hdr(d+"/", mode, tar.TypeDir, 0)); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(hdr("etc/os-release", 0o644, tar.TypeReg, int64(len(osRelease)))); err != nil {
		return err
	}
	if _, err := tw.Write(osRelease); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("default root filesystem: %w", err)
	}
	f, err := os.Open(exe)
	if err != nil {
		return fmt.Errorf("default root filesystem: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr("usr/bin/hostos", 0o755, tar.TypeReg, fi.Size())); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("default root filesystem: %w", err)
	}
	return tw.Close()
}
