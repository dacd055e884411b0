package device

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
)

// tree is a fake /sys and /dev in a temporary directory, laid out as the kernel does: class/block/<name>
// links to devices/.../<disk>[/<partition>] directories holding dev, partition and uevent attributes.
type tree struct {
	t        *testing.T
	sys, dev string
}

func newTree(t *testing.T) tree {
	root := t.TempDir()
	tr := tree{t: t, sys: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev")}
	tr.mkdir(filepath.Join(tr.sys, "class", "block"))
	tr.mkdir(tr.dev)
	return tr
}

func (tr tree) mkdir(p string) {
	if err := os.MkdirAll(p, 0o755); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr tree) write(p, s string) {
	tr.mkdir(filepath.Dir(p))
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		tr.t.Fatal(err)
	}
}

// disk adds a whole disk; node, when not nil, creates its device node.
func (tr tree) disk(name, dev string, node func(path string)) {
	dir := filepath.Join(tr.sys, "devices", "virtual", "block", name)
	tr.write(filepath.Join(dir, "dev"), dev+"\n")
	tr.write(filepath.Join(dir, "uevent"), "MAJOR=0\nMINOR=0\nDEVNAME="+name+"\nDEVTYPE=disk\n")
	tr.link(filepath.Join("..", "..", "devices", "virtual", "block", name), name)
	if node != nil {
		node(filepath.Join(tr.dev, name))
	}
}

// part adds partition num of disk; node, when not nil, creates its device node.
func (tr tree) part(diskName, name string, num int, dev string, node func(path string)) {
	dir := filepath.Join(tr.sys, "devices", "virtual", "block", diskName, name)
	tr.write(filepath.Join(dir, "partition"), fmt.Sprintf("%d\n", num))
	tr.write(filepath.Join(dir, "dev"), dev+"\n")
	tr.write(filepath.Join(dir, "uevent"), fmt.Sprintf("DEVNAME=%s\nDEVTYPE=partition\nPARTN=%d\n", name, num))
	tr.link(filepath.Join("..", "..", "devices", "virtual", "block", diskName, name), name)
	if node != nil {
		node(filepath.Join(tr.dev, name))
	}
}

func (tr tree) link(target, name string) {
	if err := os.Symlink(target, filepath.Join(tr.sys, "class", "block", name)); err != nil {
		tr.t.Fatal(err)
	}
}

// udevLink adds /dev/disk/<kind>/<name> pointing at a node, as udev does.
func (tr tree) udevLink(kind, name, node string) {
	dir := filepath.Join(tr.dev, "disk", kind)
	tr.mkdir(dir)
	if err := os.Symlink(filepath.Join("..", "..", node), filepath.Join(dir, name)); err != nil {
		tr.t.Fatal(err)
	}
}

// extFS writes the start of an ext4 filesystem: just the superblock fields Probe and fsUUID read.
func extFS(t *testing.T, label, id string) func(string) {
	return func(path string) {
		b := make([]byte, 8<<10)
		sb := b[1024:]
		binary.LittleEndian.PutUint16(sb[56:], 0xef53)
		binary.LittleEndian.PutUint32(sb[0x60:], 0x40) // extents: ext4
		u := uuid.MustParse(id)
		copy(sb[0x68:], u[:])
		copy(sb[120:136], label)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// table writes a disk image with a partition table of kind: one 1 MiB partition per number.
func table(t *testing.T, kind partition.Kind, guids ...string) func(string) {
	return func(path string) {
		d, err := disk.Create(path, 16<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		tb := &partition.Table{Kind: kind, SectorSize: 512, DiskSignature: 0xa1b2c3d4, DiskGUID: uuid.MustParse("11111111-2222-4333-8444-555555555555")}
		for i, g := range guids {
			p := partition.Partition{Number: i + 1, Start: int64(i+1) << 20, Size: 1 << 20, MBRType: partition.TypeLinux}
			if kind == partition.GPT {
				p.GPTType, p.GUID = partition.LinuxFilesystem, uuid.MustParse(g)
			}
			tb.Partitions = append(tb.Partitions, p)
		}
		if err := partition.Write(d, d.Size(), tb); err != nil {
			t.Fatal(err)
		}
	}
}

func TestScan(t *testing.T) {
	tr := newTree(t)
	tr.disk("mmcblk0", "179:0", table(t, partition.MSDOS, "", "", "", ""))
	tr.part("mmcblk0", "mmcblk0p1", 1, "179:1", nil) // no node: udev links fill in
	tr.udevLink("by-label", `resin\x2dboot`, "mmcblk0p1")
	tr.udevLink("by-uuid", "1A2B-3C4D", "mmcblk0p1")
	tr.part("mmcblk0", "mmcblk0p2", 2, "179:2", extFS(t, "resin-rootA", "ba1eba1e-0000-4000-8000-000000000002"))
	tr.part("mmcblk0", "mmcblk0p3", 3, "179:3", extFS(t, "resin-rootB", "ba1eba1e-0000-4000-8000-000000000003"))
	tr.part("mmcblk0", "mmcblk0p4", 4, "179:4", extFS(t, "resin-state", "ba1eba1e-0000-4000-8000-000000000004"))
	tr.disk("sda", "8:0", table(t, partition.GPT, "0a0a0a0a-0000-4000-8000-000000000001", "0a0a0a0a-0000-4000-8000-000000000002"))
	tr.part("sda", "sda1", 1, "8:1", extFS(t, "scratch", "ba1eba1e-0000-4000-8000-00000000000a"))
	tr.part("sda", "sda2", 2, "8:2", func(p string) { // not a filesystem Probe knows
		if err := os.WriteFile(p, make([]byte, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	tr.disk("loop0", "7:0", nil) // a disk without partitions

	parts, err := Scan(tr.sys, tr.dev)
	if err != nil {
		t.Fatal(err)
	}
	mmc, sda := filepath.Join(tr.dev, "mmcblk0"), filepath.Join(tr.dev, "sda")
	want := []Partition{
		{Device: mmc + "p1", Disk: mmc, Number: 1, Label: "resin-boot", UUID: "1A2B-3C4D", PartUUID: "a1b2c3d4-01", Dev: "179:1"},
		{Device: mmc + "p2", Disk: mmc, Number: 2, Label: "resin-rootA", UUID: "ba1eba1e-0000-4000-8000-000000000002", PartUUID: "a1b2c3d4-02", Dev: "179:2"},
		{Device: mmc + "p3", Disk: mmc, Number: 3, Label: "resin-rootB", UUID: "ba1eba1e-0000-4000-8000-000000000003", PartUUID: "a1b2c3d4-03", Dev: "179:3"},
		{Device: mmc + "p4", Disk: mmc, Number: 4, Label: "resin-state", UUID: "ba1eba1e-0000-4000-8000-000000000004", PartUUID: "a1b2c3d4-04", Dev: "179:4"},
		{Device: sda + "1", Disk: sda, Number: 1, Label: "scratch", UUID: "ba1eba1e-0000-4000-8000-00000000000a", PartUUID: "0a0a0a0a-0000-4000-8000-000000000001", Dev: "8:1"},
		{Device: sda + "2", Disk: sda, Number: 2, PartUUID: "0a0a0a0a-0000-4000-8000-000000000002", Dev: "8:2"},
	}
	if !reflect.DeepEqual(parts, want) {
		t.Fatalf("Scan:\n got %+v\nwant %+v", parts, want)
	}

	// The live root resolves from these, however the command line names it.
	for _, cmdline := range []string{"root=LABEL=resin-rootB", "root=PARTUUID=a1b2c3d4-03", "root=UUID=ba1eba1e-0000-4000-8000-000000000003", "root=/dev/mmcblk0p3"} {
		a, i, err := Active(cmdline, []byte(mountinfoB), parts)
		if err != nil {
			t.Fatalf("%s: %v", cmdline, err)
		}
		if a != (Root{mmc + "p3", "resin-rootB", "B"}) || i != (Root{mmc + "p2", "resin-rootA", "A"}) {
			t.Fatalf("%s: Active = %+v, %+v", cmdline, a, i)
		}
	}
}

func TestScanDuplicateLabelOnSecondDisk(t *testing.T) {
	tr := newTree(t)
	tr.disk("mmcblk0", "179:0", nil)
	tr.part("mmcblk0", "mmcblk0p2", 2, "179:2", extFS(t, "resin-rootA", "ba1eba1e-0000-4000-8000-000000000002"))
	tr.part("mmcblk0", "mmcblk0p3", 3, "179:3", extFS(t, "resin-rootB", "ba1eba1e-0000-4000-8000-000000000003"))
	// A USB stick flashed with the same image: udev's by-label link would name only one of them.
	tr.disk("sda", "8:0", nil)
	tr.part("sda", "sda2", 2, "8:2", extFS(t, "resin-rootA", "ba1eba1e-0000-4000-8000-000000000002"))
	tr.part("sda", "sda3", 3, "8:3", extFS(t, "resin-rootB", "ba1eba1e-0000-4000-8000-000000000003"))
	tr.udevLink("by-label", "resin-rootB", "sda3")

	parts, err := Scan(tr.sys, tr.dev)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Find(parts, "resin-rootB", "balena-rootB")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(tr.dev, "mmcblk0p3")) || !strings.Contains(err.Error(), filepath.Join(tr.dev, "sda3")) {
		t.Fatalf("Find: %v, want an error naming both partitions", err)
	}
	if _, _, err := Active("root=LABEL=resin-rootA", mountedAt("179:2", "/dev/mmcblk0p2"), parts); err == nil {
		t.Fatal("Active accepted a device with two resin-rootA")
	}
}

func TestScanErrors(t *testing.T) {
	if _, err := Scan(filepath.Join(t.TempDir(), "nosys"), "/dev"); err == nil {
		t.Error("Scan of a missing sysfs succeeded")
	}
	tr := newTree(t)
	tr.disk("sda", "8:0", nil)
	tr.part("sda", "sda1", 1, "8:1", nil)
	tr.write(filepath.Join(tr.sys, "devices", "virtual", "block", "sda", "sda1", "partition"), "x\n")
	if _, err := Scan(tr.sys, tr.dev); err == nil || !strings.Contains(err.Error(), "sda1") {
		t.Errorf("bad partition number: %v", err)
	}
}

// needTools skips (locally) or fails (in CI) without the external tools a test judges by.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found", tool)
			}
			t.Skipf("%s not found", tool)
		}
	}
}

func run(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestScanRealTools builds the partition tables with sfdisk and the filesystems with mkfs, and holds what Scan
// reads against sfdisk --json and blkid.
func TestScanRealTools(t *testing.T) {
	needTools(t, "sfdisk", "mkfs.ext4", "mkfs.vfat", "blkid")
	tr := newTree(t)
	sparse := func(path string, size int64) {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	tr.disk("mmcblk0", "179:0", func(p string) {
		sparse(p, 64<<20)
		run(t, "label: dos\nlabel-id: 0x5eed1234\nstart=2048, size=16384, type=c\nstart=18432, size=16384, type=83\n", "sfdisk", "-q", p)
	})
	tr.disk("nvme0n1", "259:0", func(p string) {
		sparse(p, 64<<20)
		run(t, "label: gpt\nstart=2048, size=16384\nstart=18432, size=16384\n", "sfdisk", "-q", p)
	})
	tr.part("mmcblk0", "mmcblk0p1", 1, "179:1", func(p string) {
		sparse(p, 8<<20)
		run(t, "", "mkfs.vfat", "-n", "RESIN-BOOT", "-i", "1a2b3c4d", p)
	})
	tr.part("mmcblk0", "mmcblk0p2", 2, "179:2", func(p string) {
		sparse(p, 8<<20)
		run(t, "", "mkfs.ext4", "-q", "-F", "-L", "resin-rootA", "-U", "ba1eba1e-0000-4000-8000-000000000002", p)
	})
	tr.part("nvme0n1", "nvme0n1p1", 1, "259:1", func(p string) {
		sparse(p, 8<<20)
		run(t, "", "mkfs.vfat", "-F", "32", "-n", "balena-boot", p)
	})
	tr.part("nvme0n1", "nvme0n1p2", 2, "259:2", func(p string) {
		sparse(p, 8<<20)
		run(t, "", "mkfs.ext4", "-q", "-F", "-L", "balena-rootB", p)
	})

	parts, err := Scan(tr.sys, tr.dev)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 4 {
		t.Fatalf("Scan found %d partitions: %+v", len(parts), parts)
	}
	var gpt struct {
		PartitionTable struct {
			Partitions []struct{ UUID string }
		}
	}
	if err := json.Unmarshal([]byte(run(t, "", "sfdisk", "--json", filepath.Join(tr.dev, "nvme0n1"))), &gpt); err != nil {
		t.Fatal(err)
	}
	wantPartUUID := map[string]string{"mmcblk0p1": "5eed1234-01", "mmcblk0p2": "5eed1234-02"}
	for i, p := range gpt.PartitionTable.Partitions {
		wantPartUUID[fmt.Sprintf("nvme0n1p%d", i+1)] = strings.ToLower(p.UUID)
	}
	for _, p := range parts {
		name := filepath.Base(p.Device)
		if p.PartUUID != wantPartUUID[name] {
			t.Errorf("%s: PARTUUID %q, sfdisk says %q", name, p.PartUUID, wantPartUUID[name])
		}
		blkid := map[string]string{}
		for _, line := range strings.Split(run(t, "", "blkid", "-p", "-o", "export", p.Device), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				blkid[k] = v
			}
		}
		if p.Label != blkid["LABEL"] || p.UUID != blkid["UUID"] {
			t.Errorf("%s: label %q uuid %q, blkid says label %q uuid %q", name, p.Label, p.UUID, blkid["LABEL"], blkid["UUID"])
		}
	}
	if parts[0].UUID != "1A2B-3C4D" || parts[1].UUID != "ba1eba1e-0000-4000-8000-000000000002" {
		t.Errorf("uuids %q, %q", parts[0].UUID, parts[1].UUID)
	}
	// One disk has resin-rootA, the other balena-rootB: a usable pair, since balena-* counts as resin-*.
	mi := []byte("23 1 179:2 / / ro,relatime shared:1 - ext4 /dev/mmcblk0p2 ro\n")
	a, i, err := Active("root=PARTUUID=5eed1234-02 rootwait", mi, parts)
	if err != nil {
		t.Fatal(err)
	}
	if a.Slot != "A" || a.Label != "resin-rootA" || i.Slot != "B" || i.Label != "balena-rootB" || i.Device != filepath.Join(tr.dev, "nvme0n1p2") {
		t.Fatalf("Active = %+v, %+v", a, i)
	}
}
