package partition

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/hostos/hostos/tests/testtool"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// run runs a tool and returns its stdout and stderr, failing the test when it exits non-zero.
func run(t *testing.T, stdin string, name string, args ...string) (stdout, stderr string) {
	t.Helper()
	return runEnv(t, nil, stdin, name, args...)
}

// runEnv is run with extra environment variables.
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

// sfdiskTable is `sfdisk --json` output.
type sfdiskTable struct {
	Label      string            `json:"label"`
	ID         string            `json:"id"`
	Unit       string            `json:"unit"`
	FirstLBA   int64             `json:"firstlba"`
	LastLBA    int64             `json:"lastlba"`
	SectorSize int               `json:"sectorsize"`
	Partitions []sfdiskPartition `json:"partitions"`
}

type sfdiskPartition struct {
	Node     string `json:"node"`
	Start    int64  `json:"start"`
	Size     int64  `json:"size"`
	Type     string `json:"type"`
	UUID     string `json:"uuid"`
	Name     string `json:"name"`
	Attrs    string `json:"attrs"`
	Bootable bool   `json:"bootable"`
}

// number is the partition number sfdisk appends to the image path.
func (p sfdiskPartition) number(image string) int {
	var n int
	fmt.Sscanf(strings.TrimPrefix(p.Node, image), "%d", &n)
	return n
}

type sfdisk struct {
	t          *testing.T
	image      string
	sectorSize int
}

func newSfdisk(t *testing.T, image string, sectorSize int) sfdisk {
	testtool.Need(t, "sfdisk")
	return sfdisk{t: t, image: image, sectorSize: sectorSize}
}

func (s sfdisk) args(a ...string) []string {
	if s.sectorSize != 0 && s.sectorSize != 512 {
		// sfdisk 2.38 has no --sector-size; image files always look like 512-byte-sector disks to it.
		s.t.Fatalf("sfdisk cannot use %d-byte sectors on an image file", s.sectorSize)
	}
	return append(a, s.image)
}

// JSON reads the table as sfdisk sees it.
func (s sfdisk) JSON() sfdiskTable {
	s.t.Helper()
	out, _ := run(s.t, "", "sfdisk", s.args("--json")...)
	var v struct {
		PartitionTable sfdiskTable `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		s.t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	return v.PartitionTable
}

// Dump returns the header fields of `sfdisk -d` (label, label-id, ...) and what sfdisk printed on stderr, where
// it complains about damaged tables.
func (s sfdisk) Dump() (header map[string]string, stderr string) {
	s.t.Helper()
	out, stderr := run(s.t, "", "sfdisk", s.args("-d")...)
	header = map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if ok && !strings.HasPrefix(k, s.image) {
			header[k] = v
		}
	}
	return header, stderr
}

// Apply writes a table from an sfdisk script.
func (s sfdisk) Apply(script string) {
	s.t.Helper()
	run(s.t, script, "sfdisk", s.args("-q", "--no-reread", "--no-tell-kernel")...)
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

// mkfsExt4 formats [off, off+size) of image as ext4 with a label.
func mkfsExt4(t *testing.T, image string, off, size int64, label string) {
	t.Helper()
	run(t, "", "mkfs.ext4", "-F", "-q", "-L", label, "-E", fmt.Sprintf("offset=%d", off), image, fmt.Sprintf("%dk", size/1024))
}

// mkfsVfat formats [off, off+size) of image as FAT of the given bits (12, 16 or 32) with a label.
func mkfsVfat(t *testing.T, image string, off, size int64, bits int, label string) {
	t.Helper()
	run(t, "", "mkfs.vfat", "-F", fmt.Sprint(bits), "-n", label, fmt.Sprintf("--offset=%d", off/512), image, fmt.Sprint(size/1024))
}

// fdiskCommands feeds interactive commands to `fdisk -b sectorSize`, the one util-linux tool that writes tables
// with 4096-byte sectors into an image file. Its output is not parsed.
func fdiskCommands(t *testing.T, image string, sectorSize int, commands string) {
	t.Helper()
	run(t, commands, "fdisk", "-b", fmt.Sprint(sectorSize), image)
}

// mlabel relabels the FAT filesystem at off with mtools.
func mlabel(t *testing.T, image string, off int64, label string) {
	t.Helper()
	runEnv(t, []string{"MTOOLS_SKIP_CHECK=1"}, "", "mlabel", "-i", fmt.Sprintf("%s@@%d", image, off), "::"+label)
}

// mke2fs formats [off, off+size) of image as the given ext type (ext2, ext3, ext4) with a label.
func mke2fs(t *testing.T, image, fstype string, off, size int64, label string) {
	t.Helper()
	run(t, "", "mke2fs", "-F", "-q", "-t", fstype, "-L", label, "-E", fmt.Sprintf("offset=%d", off), image, fmt.Sprintf("%dk", size/1024))
}
