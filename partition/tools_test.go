package partition

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hostos/hostos/tests/testtool"
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

// fdiskCommands feeds interactive commands to `fdisk -b sectorSize`, the one util-linux tool that writes tables
// with 4096-byte sectors into an image file. Its output is not parsed.
func fdiskCommands(t *testing.T, image string, sectorSize int, commands string) {
	t.Helper()
	run(t, commands, "fdisk", "-b", fmt.Sprint(sectorSize), image)
}
