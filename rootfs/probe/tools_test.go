package probe

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/tests/testtool"
)

func run(t *testing.T, stdin string, name string, args ...string) (stdout, stderr string) {
	t.Helper()
	return runEnv(t, nil, stdin, name, args...)
}

func runEnv(t *testing.T, env []string, stdin string, name string, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(testtool.Need(t, name), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String()
}

// mkfsExt4 formats [off, off+size) of image as ext4 with a label.
func mkfsExt4(t *testing.T, image string, off, size int64, label string) {
	t.Helper()
	run(t, "", "mkfs.ext4", "-F", "-q", "-L", label, "-E", fmt.Sprintf("offset=%d", off), image, fmt.Sprintf("%dk", size/1024))
}

// mke2fs formats [off, off+size) of image as the given ext type (ext2, ext3, ext4) with a label.
func mke2fs(t *testing.T, image, fstype string, off, size int64, label string) {
	t.Helper()
	run(t, "", "mke2fs", "-F", "-q", "-t", fstype, "-L", label, "-E", fmt.Sprintf("offset=%d", off), image, fmt.Sprintf("%dk", size/1024))
}

// mkfsVfat formats [off, off+size) of image as FAT of the given bits (12, 16 or 32) with a label.
func mkfsVfat(t *testing.T, image string, off, size int64, bits int, label string) {
	t.Helper()
	run(t, "", "mkfs.vfat", "-F", fmt.Sprint(bits), "-n", label, fmt.Sprintf("--offset=%d", off/512), image, fmt.Sprint(size/1024))
}

// mlabel relabels the FAT filesystem at off with mtools.
func mlabel(t *testing.T, image string, off int64, label string) {
	t.Helper()
	runEnv(t, []string{"MTOOLS_SKIP_CHECK=1"}, "", "mlabel", "-i", fmt.Sprintf("%s@@%d", image, off), "::"+label)
}

// planAndWrite plans l onto a sparse image of the planned size and returns the table and the image.
func planAndWrite(t *testing.T, l partition.Layout) (*partition.Table, string, int64) {
	t.Helper()
	tab, err := partition.Plan(l)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	size := partition.MinSize(l)
	path := filepath.Join(t.TempDir(), "disk.img")
	d, err := disk.Create(path, size)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := partition.Write(d, size, tab); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return tab, path, size
}

func balenaParts() []partition.PartSpec {
	return []partition.PartSpec{
		{Label: "resin-boot", Size: 40 * partition.MiB, MBRType: partition.TypeFAT16LBA, Bootable: true},
		{Label: "resin-rootA", Size: 320 * partition.MiB, MBRType: partition.TypeLinux},
		{Label: "resin-rootB", Size: 320 * partition.MiB, MBRType: partition.TypeLinux},
		{Label: "resin-state", Size: 20 * partition.MiB, MBRType: partition.TypeLinux},
		{Label: "resin-data", Size: 192 * partition.MiB, MBRType: partition.TypeLinux},
	}
}

// overwrite writes s at off of image.
func overwrite(t *testing.T, image string, off int64, s string) {
	t.Helper()
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
}

// blkid probes the filesystem at an offset of a file with `blkid -p -o export`.
func blkid(t *testing.T, image string, off int64) map[string]string {
	t.Helper()
	cmd := exec.Command(testtool.Need(t, "blkid"), "-p", "-o", "export", "-O", fmt.Sprint(off), image)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 2 {
		return map[string]string{} // nothing recognised
	} else if err != nil {
		t.Fatalf("blkid at %d: %v", off, err)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	return kv
}
