package device

import (
	"errors"
	"strings"
	"testing"

	"github.com/hostos/hostos/rootfs/probe"
)

func TestParseCmdline(t *testing.T) {
	for _, tc := range []struct {
		cmdline, root string
		ok            bool
	}{
		{"console=ttyS0,115200 root=LABEL=resin-rootA rootfstype=ext4 rootwait", "LABEL=resin-rootA", true},
		{"root=PARTUUID=a1b2c3d4-02 ro", "PARTUUID=a1b2c3d4-02", true},
		{"dwc_otg.lpm_enable=0 root=UUID=ba1eba1e-0000-4000-8000-000000000002 rootfstype=ext4\n", "UUID=ba1eba1e-0000-4000-8000-000000000002", true},
		{"root=/dev/sda2", "/dev/sda2", true},
		{"root=/dev/sda2 quiet root=/dev/sda3", "/dev/sda3", true}, // the last one wins, as in the kernel
		{`root="LABEL=resin-rootB" quiet`, "LABEL=resin-rootB", true},
		{`quiet "root=LABEL=resin-rootB"`, "LABEL=resin-rootB", true},
		{"quiet -- root=/dev/sda3", "", false}, // after "--" the parameters are init's
		{"root=/dev/sda2 -- root=/dev/sda3", "/dev/sda2", true},
		{"rootwait rootfstype=ext4 myroot=/dev/sda2", "", false},
		{"root=", "", false},
		{"", "", false},
	} {
		root, ok := ParseCmdline(tc.cmdline)
		if root != tc.root || ok != tc.ok {
			t.Errorf("ParseCmdline(%q) = %q, %v; want %q, %v", tc.cmdline, root, ok, tc.root, tc.ok)
		}
	}
}

// mountinfoB is a balenaOS-like /proc/self/mountinfo with root B (mmcblk0p3) mounted at /.
const mountinfoB = `23 1 179:3 / / ro,relatime shared:1 - ext4 /dev/mmcblk0p3 ro
24 23 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
25 23 0:5 / /dev rw,nosuid shared:8 - devtmpfs devtmpfs rw,size=1918452k,nr_inodes=479613,mode=755
26 23 0:23 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
38 23 179:5 / /mnt/state rw,relatime shared:19 - ext4 /dev/mmcblk0p5 rw
39 23 179:6 / /mnt/data rw,relatime shared:20 - ext4 /dev/mmcblk0p6 rw
40 23 179:1 / /mnt/boot rw,relatime shared:21 - vfat /dev/mmcblk0p1 rw,fmask=0022,dmask=0022,codepage=437
41 38 179:5 /root-overlay/etc/NetworkManager /etc/NetworkManager rw,relatime shared:19 - ext4 /dev/mmcblk0p5 rw
`

func TestParseMountinfo(t *testing.T) {
	stacked := mountinfoB + "50 23 0:40 / /mnt/my\\040disk rw,relatime shared:30 master:4 - ext4 /dev/sd\\134x1 rw\n" +
		"51 50 0:41 / /mnt/my\\040disk rw - tmpfs tmpfs rw\n"
	for _, tc := range []struct {
		data, point, source string
		ok                  bool
	}{
		{mountinfoB, "/", "/dev/mmcblk0p3", true},
		{mountinfoB, "/mnt/boot", "/dev/mmcblk0p1", true},
		{mountinfoB, "/etc/NetworkManager", "/dev/mmcblk0p5", true},
		{mountinfoB, "/mnt", "", false},
		{stacked, "/mnt/my disk", "tmpfs", true}, // the mount on top
		{"50 23 0:40 / /x rw shared:3 master:4 - ext4 /dev/sd\\134x1 rw\n", "/x", `/dev/sd\x1`, true},
		{"garbage\n\n1 2 3\n", "/", "", false},
	} {
		source, ok := ParseMountinfo([]byte(tc.data), tc.point)
		if source != tc.source || ok != tc.ok {
			t.Errorf("ParseMountinfo(%q) = %q, %v; want %q, %v", tc.point, source, ok, tc.source, tc.ok)
		}
	}
}

// emmc is a balenaOS eMMC layout as Scan reports it.
func emmc(rootA, rootB string) []Partition {
	return []Partition{
		{Device: "/dev/mmcblk0p1", Disk: "/dev/mmcblk0", Number: 1, Label: "resin-boot", UUID: "1A2B-3C4D", PartUUID: "a1b2c3d4-01", Dev: "179:1"},
		{Device: "/dev/mmcblk0p2", Disk: "/dev/mmcblk0", Number: 2, Label: rootA, UUID: "ba1eba1e-0000-4000-8000-000000000002", PartUUID: "a1b2c3d4-02", Dev: "179:2"},
		{Device: "/dev/mmcblk0p3", Disk: "/dev/mmcblk0", Number: 3, Label: rootB, UUID: "ba1eba1e-0000-4000-8000-000000000003", PartUUID: "a1b2c3d4-03", Dev: "179:3"},
		{Device: "/dev/mmcblk0p4", Disk: "/dev/mmcblk0", Number: 4, PartUUID: "a1b2c3d4-04", Dev: "179:4"},
		{Device: "/dev/mmcblk0p5", Disk: "/dev/mmcblk0", Number: 5, Label: "resin-state", PartUUID: "a1b2c3d4-05", Dev: "179:5"},
		{Device: "/dev/mmcblk0p6", Disk: "/dev/mmcblk0", Number: 6, Label: "resin-data", PartUUID: "a1b2c3d4-06", Dev: "179:6"},
	}
}

// mountedAt is a one-line mountinfo with / from dev and source.
func mountedAt(dev, source string) []byte {
	return []byte("1 0 0:2 / / rw - rootfs rootfs rw\n23 1 " + dev + " / / ro,relatime shared:1 - ext4 " + source + " ro\n")
}

func TestActive(t *testing.T) {
	for _, tc := range []struct {
		name             string
		parts            []Partition
		cmdline          string
		mountinfo        []byte
		active, inactive Root
	}{
		{"label A", emmc("resin-rootA", "resin-rootB"), "root=LABEL=resin-rootA rootwait", mountedAt("179:2", "/dev/mmcblk0p2"),
			Root{"/dev/mmcblk0p2", "resin-rootA", "A"}, Root{"/dev/mmcblk0p3", "resin-rootB", "B"}},
		{"balena labels", emmc("balena-rootA", "balena-rootB"), "root=LABEL=balena-rootB", []byte(mountinfoB),
			Root{"/dev/mmcblk0p3", "balena-rootB", "B"}, Root{"/dev/mmcblk0p2", "balena-rootA", "A"}},
		{"mixed spellings", emmc("resin-rootA", "balena-rootB"), "root=LABEL=resin-rootA", mountedAt("179:2", "/dev/mmcblk0p2"),
			Root{"/dev/mmcblk0p2", "resin-rootA", "A"}, Root{"/dev/mmcblk0p3", "balena-rootB", "B"}},
		{"partuuid", emmc("resin-rootA", "resin-rootB"), "root=PARTUUID=A1B2C3D4-03", []byte(mountinfoB),
			Root{"/dev/mmcblk0p3", "resin-rootB", "B"}, Root{"/dev/mmcblk0p2", "resin-rootA", "A"}},
		{"fs uuid", emmc("resin-rootA", "resin-rootB"), "root=UUID=ba1eba1e-0000-4000-8000-000000000002", mountedAt("179:2", "/dev/mmcblk0p2"),
			Root{"/dev/mmcblk0p2", "resin-rootA", "A"}, Root{"/dev/mmcblk0p3", "resin-rootB", "B"}},
		{"device path, /dev/root source", emmc("resin-rootA", "resin-rootB"), "root=/dev/mmcblk0p3", mountedAt("179:3", "/dev/root"),
			Root{"/dev/mmcblk0p3", "resin-rootB", "B"}, Root{"/dev/mmcblk0p2", "resin-rootA", "A"}},
		{"by-label path", emmc("resin-rootA", "resin-rootB"), "root=/dev/disk/by-label/resin-rootA", mountedAt("179:2", "/dev/disk/by-label/resin-rootA"),
			Root{"/dev/mmcblk0p2", "resin-rootA", "A"}, Root{"/dev/mmcblk0p3", "resin-rootB", "B"}},
		{"major:minor", emmc("resin-rootA", "resin-rootB"), "root=179:2", mountedAt("179:2", "/dev/mmcblk0p2"),
			Root{"/dev/mmcblk0p2", "resin-rootA", "A"}, Root{"/dev/mmcblk0p3", "resin-rootB", "B"}},
		{"hex device number", emmc("resin-rootA", "resin-rootB"), "root=b303", []byte(mountinfoB),
			Root{"/dev/mmcblk0p3", "resin-rootB", "B"}, Root{"/dev/mmcblk0p2", "resin-rootA", "A"}},
		{"source only, no device number known", stripDev(emmc("resin-rootA", "resin-rootB")), "root=LABEL=resin-rootA", mountedAt("8:2", "/dev/mmcblk0p2"),
			Root{"/dev/mmcblk0p2", "resin-rootA", "A"}, Root{"/dev/mmcblk0p3", "resin-rootB", "B"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, i, err := Active(tc.cmdline, tc.mountinfo, tc.parts)
			if err != nil {
				t.Fatal(err)
			}
			if a != tc.active || i != tc.inactive {
				t.Fatalf("Active = %+v, %+v; want %+v, %+v", a, i, tc.active, tc.inactive)
			}
		})
	}
}

func stripDev(ps []Partition) []Partition {
	for i := range ps {
		ps[i].Dev = ""
	}
	return ps
}

func TestActiveRefuses(t *testing.T) {
	secondDisk := append(emmc("resin-rootA", "resin-rootB"),
		Partition{Device: "/dev/sda2", Disk: "/dev/sda", Number: 2, Label: "resin-rootA", Dev: "8:2"},
		Partition{Device: "/dev/sda3", Disk: "/dev/sda", Number: 3, Label: "resin-rootB", Dev: "8:3"})
	onlyInactiveDup := append(emmc("resin-rootA", "resin-rootB"),
		Partition{Device: "/dev/sda3", Disk: "/dev/sda", Number: 3, Label: "balena-rootB", Dev: "8:3"})
	// The same device listed twice, under another node and label (a stale or hand-made list).
	alias := append(emmc("resin-rootA", ""),
		Partition{Device: "/dev/block/179:2", Disk: "/dev/mmcblk0", Number: 2, Label: "resin-rootB", Dev: "179:2"})
	cloned := append(emmc("resin-rootA", "resin-rootB"),
		Partition{Device: "/dev/sda2", Disk: "/dev/sda", Number: 2, Label: "resin-rootA", PartUUID: "a1b2c3d4-02", Dev: "8:2"})
	for _, tc := range []struct {
		name      string
		parts     []Partition
		cmdline   string
		mountinfo []byte
		want      string
		notFound  bool
	}{
		{"cmdline A, mounted from B", emmc("resin-rootA", "resin-rootB"), "root=LABEL=resin-rootA", []byte(mountinfoB),
			"kernel command line root=LABEL=resin-rootA is /dev/mmcblk0p2 (resin-rootA) but / is mounted from /dev/mmcblk0p3 (resin-rootB)", false},
		{"cmdline A, source says B", stripDev(emmc("resin-rootA", "resin-rootB")), "root=LABEL=resin-rootA", mountedAt("179:3", "/dev/mmcblk0p3"),
			"but / is mounted from /dev/mmcblk0p3", false},
		{"active label on a second disk", secondDisk, "root=LABEL=resin-rootA", mountedAt("179:2", "/dev/mmcblk0p2"),
			"ambiguous: /dev/mmcblk0p2 (resin-rootA) and /dev/sda2 (resin-rootA) all match", false},
		{"active label on a second disk, booted by uuid", secondDisk, "root=UUID=ba1eba1e-0000-4000-8000-000000000002", mountedAt("179:2", "/dev/mmcblk0p2"),
			"/dev/mmcblk0p2 (resin-rootA) and /dev/sda2 (resin-rootA) all carry it", false},
		{"inactive label on a second disk", onlyInactiveDup, "root=LABEL=resin-rootA", mountedAt("179:2", "/dev/mmcblk0p2"),
			"inactive root: find partition with labels \"resin-rootB\", \"balena-rootB\": /dev/mmcblk0p3 (resin-rootB) and /dev/sda3 (balena-rootB)", false},
		{"active and inactive the same device", alias, "root=LABEL=resin-rootA", mountedAt("179:2", "/dev/mmcblk0p2"),
			"is the active root too", false},
		{"ambiguous partuuid", cloned, "root=PARTUUID=a1b2c3d4-02", mountedAt("179:2", "/dev/mmcblk0p2"),
			"ambiguous: /dev/mmcblk0p2 (resin-rootA) and /dev/sda2 (resin-rootA) all match", false},
		{"no inactive root", emmc("resin-rootA", "resin-data2"), "root=LABEL=resin-rootA", mountedAt("179:2", "/dev/mmcblk0p2"),
			"inactive root", true},
		{"unknown uuid", emmc("resin-rootA", "resin-rootB"), "root=UUID=0000", mountedAt("179:2", "/dev/mmcblk0p2"),
			"root=UUID=0000: no partition matches", true},
		{"not a root label", emmc("resin-rootA", "resin-rootB"), "root=/dev/mmcblk0p1", mountedAt("179:1", "/dev/mmcblk0p1"),
			`carries label "resin-boot", not a root label`, false},
		{"no root=", emmc("resin-rootA", "resin-rootB"), "quiet", []byte(mountinfoB), "no root=", false},
		{"unsupported root=", emmc("resin-rootA", "resin-rootB"), "root=PARTLABEL=rootA", []byte(mountinfoB), "PARTLABEL= is not supported", false},
		{"no / mount", emmc("resin-rootA", "resin-rootB"), "root=LABEL=resin-rootB", []byte("24 23 0:22 / /sys rw - sysfs sysfs rw\n"), "no mount at /", false},
		{"overlay root", emmc("resin-rootA", "resin-rootB"), "root=LABEL=resin-rootB", mountedAt("0:30", "overlay"), "/ is mounted from overlay (device 0:30)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, i, err := Active(tc.cmdline, tc.mountinfo, tc.parts)
			if err == nil {
				t.Fatalf("Active = %+v, %+v; want an error", a, i)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if errors.Is(err, probe.ErrNotFound) != tc.notFound {
				t.Fatalf("error %q: errors.Is(probe.ErrNotFound) = %v", err, !tc.notFound)
			}
		})
	}
}

func TestFind(t *testing.T) {
	parts := append(emmc("resin-rootA", "resin-rootB"),
		Partition{Device: "/dev/sda1", Disk: "/dev/sda", Number: 1, Label: "RESIN-BOOT"})
	if p, err := Find(parts, "resin-state", "balena-state"); err != nil || p.Device != "/dev/mmcblk0p5" {
		t.Fatalf("Find state = %+v, %v", p, err)
	}
	if _, err := Find(parts, "resin-boot"); err == nil || !strings.Contains(err.Error(), "/dev/mmcblk0p1 (resin-boot) and /dev/sda1 (RESIN-BOOT)") {
		t.Fatalf("Find boot on two disks: %v", err)
	}
	if _, err := Find(parts, "balena-data"); !errors.Is(err, probe.ErrNotFound) {
		t.Fatalf("Find missing label: %v", err)
	}
	if _, err := Find(parts); err == nil {
		t.Fatal("Find without labels succeeded")
	}
	if _, err := Find(parts, ""); !errors.Is(err, probe.ErrNotFound) {
		t.Fatalf("Find of an empty label matched unlabelled partition 4: %v", err)
	}
}
