package tests

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"github.com/hostos/hostos/tests/testtool"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const mib = 1 << 20

var fixtureTime = time.Date(2021, 1, 2, 3, 4, 5, 0, time.UTC)

// capValue is a security.capability (v2) granting cap_net_raw.
var capValue = string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

// writeRootTar writes a root filesystem tar with what a Linux root needs and an ordinary user cannot make.
func writeRootTar(t testing.TB, p string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	add := func(h *tar.Header, body string) {
		h.ModTime = fixtureTime
		h.Format = tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if body != "" {
			tw.Write([]byte(body))
		}
	}
	for _, d := range []string{"bin/", "dev/", "etc/", "home/", "home/user/", "lib/", "run/", "usr/", "usr/bin/", "usr/lib/", "var/"} {
		h := &tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}
		if d == "home/user/" {
			h.Uid, h.Gid = 1000, 1000
		}
		add(h, "")
	}
	add(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, "")
	add(&tar.Header{Name: "usr/lib/os-release", Typeflag: tar.TypeReg, Mode: 0o644},
		"NAME=\"balenaOS\"\nID=balena-os\nVERSION=\"2.99.1\"\nVERSION_ID=\"2.99.1\"\nPRETTY_NAME=\"balenaOS 2.99.1\"\n")
	add(&tar.Header{Name: "etc/os-release", Typeflag: tar.TypeSymlink, Linkname: "../usr/lib/os-release"}, "")
	add(&tar.Header{Name: "usr/bin/su", Typeflag: tar.TypeReg, Mode: 0o4755}, "setuid binary\n")
	add(&tar.Header{Name: "usr/bin/wall", Typeflag: tar.TypeReg, Mode: 0o2755, Gid: 5}, "setgid binary\n")
	add(&tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}, "")
	add(&tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Gid: 6, Devmajor: 8, Devminor: 0}, "")
	add(&tar.Header{Name: "usr/bin/vi", Typeflag: tar.TypeReg, Mode: 0o755}, "editor\n")
	add(&tar.Header{Name: "usr/bin/vim", Typeflag: tar.TypeLink, Linkname: "usr/bin/vi"}, "")
	add(&tar.Header{Name: "run/initctl", Typeflag: tar.TypeFifo, Mode: 0o600}, "")
	add(&tar.Header{Name: "bin/su-abs", Typeflag: tar.TypeSymlink, Linkname: "/usr/bin/su"}, "")
	add(&tar.Header{Name: "bin/su-rel", Typeflag: tar.TypeSymlink, Linkname: "../usr/bin/su"}, "")
	add(&tar.Header{Name: "usr/bin/ping", Typeflag: tar.TypeReg, Mode: 0o755,
		PAXRecords: map[string]string{"SCHILY.xattr.security.capability": capValue}}, "ping\n")
	add(&tar.Header{Name: "home/user/notes with space.txt", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1000, Gid: 1000}, "mine\n")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// fixture is a build directory: a root filesystem tar, a deploy directory with boot files, and a spec.
type fixture struct {
	dir, spec, out string
}

func newFixture(t testing.TB, deviceType, table string, extra string) fixture {
	t.Helper()
	dir := t.TempDir()
	openDir(t, dir)
	writeRootTar(t, filepath.Join(dir, "rootfs.tar"))
	deploy := filepath.Join(dir, "deploy")
	must(t, os.MkdirAll(filepath.Join(deploy, "overlays"), 0o755))
	must(t, os.WriteFile(filepath.Join(deploy, "bzImage"), []byte(strings.Repeat("kernel", 50000)), 0o644))
	must(t, os.WriteFile(filepath.Join(deploy, "bzImage.sig"), []byte("signature"), 0o644))
	must(t, os.WriteFile(filepath.Join(deploy, "grub.cfg"), []byte("set default=0\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(deploy, "overlays", "a.dtbo"), []byte("overlay a"), 0o644))
	must(t, os.WriteFile(filepath.Join(deploy, "overlays", "b.dtbo"), []byte("overlay b"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"hostname":"factory","apiKey":"SECRETPROVISIONINGKEY","applicationId":1234}`), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "logo.png"), []byte("\x89PNG\r\n\x1a\nnot really an image body"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "wifi.nmconnection"), []byte("[connection]\nid=wifi\ntype=wifi\n"), 0o644))
	spec := fmt.Sprintf(`device_type = %q
partition_table = %q
%s
[rootfs]
source = "rootfs.tar"
[boot]
deploy_dir = "deploy"
files = ["bzImage", "grub.cfg:/EFI/BOOT/grub.cfg", "overlays:/overlays/"]
config_json = "config.json"
splash = "logo.png"
system_connections = ["wifi.nmconnection"]
`, deviceType, table, extra)
	sp := filepath.Join(dir, "spec.toml")
	must(t, os.WriteFile(sp, []byte(spec), 0o644))
	return fixture{dir: dir, spec: sp, out: filepath.Join(dir, "out.img")}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type inspectReport struct {
	PartitionTable string `json:"partitionTable"`
	Partitions     []struct {
		Number     int    `json:"number"`
		Label      string `json:"label"`
		Filesystem string `json:"filesystem"`
		Start      int64  `json:"start"`
		Size       int64  `json:"size"`
	} `json:"partitions"`
	BootPartition int            `json:"bootPartition"`
	DeviceType    string         `json:"deviceType"`
	OSVersion     string         `json:"osVersion"`
	OSReleaseFrom string         `json:"osReleaseFrom"`
	Config        map[string]any `json:"config"`
	Fingerprint   struct {
		Present, Verified bool
		Problem           string
	} `json:"fingerprint"`
}

func inspectJSON(t testing.TB, img string, args ...string) inspectReport {
	t.Helper()
	var r inspectReport
	out := mustHostos(t, nil, nil, append([]string{"inspect", "--json", img}, args...)...)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	return r
}

// TestBuildLayouts builds msdos+FAT16, msdos+FAT32 and gpt images as an unprivileged user and judges them
// with sfdisk, blkid, e2fsck, fsck.vfat, md5sum and balena's own tools.
func TestBuildLayouts(t *testing.T) {
	t.Parallel() // own images and work directories: runs beside the other long tests
	cases := []struct {
		name, deviceType, table string
		fatVersion              string
		bootMiB                 int64
	}{
		{"msdos-fat16", "genericx86-64-ext", "msdos", "FAT16", 40},
		{"msdos-fat32", "raspberrypi4-64", "msdos", "FAT32", 40},
		{"gpt", "generic-amd64-efi", "gpt", "FAT16", 40},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture(t, c.deviceType, c.table, "")
			mustHostos(t, nil, nobody, "build", "--spec", fx.spec, "-o", fx.out)
			img := fx.out

			// Layout as sfdisk sees it.
			pt := sfdiskJSON(t, img)
			labels := []string{"resin-boot", "resin-rootA", "resin-rootB", "resin-state", "resin-data"}
			sizes := []int64{c.bootMiB, 320, 320, 20, 192}
			var parts []sfdiskPart
			if c.table == "msdos" {
				if pt.Label != "dos" || len(pt.Partitions) != 6 {
					t.Fatalf("sfdisk: %+v, want dos with 6 partitions", pt)
				}
				if pt.ID == "" || pt.ID == "0x00000000" {
					t.Errorf("no MBR disk signature: %q", pt.ID)
				}
				ext := pt.Partitions[3]
				if ext.Type != "f" && ext.Type != "5" {
					t.Errorf("partition 4 type %s, want extended", ext.Type)
				}
				parts = []sfdiskPart{pt.Partitions[0], pt.Partitions[1], pt.Partitions[2], pt.Partitions[4], pt.Partitions[5]}
				// Each logical partition after its own 4 MiB gap.
				if parts[3].Start != ext.Start+8192 || parts[4].Start != parts[3].Start+parts[3].Size+8192 {
					t.Errorf("logical partitions not after their own 4 MiB gaps: ext %d state %d data %d", ext.Start, parts[3].Start, parts[4].Start)
				}
				wantBoot := map[string]string{"FAT16": "e", "FAT32": "c"}[c.fatVersion]
				if parts[0].Type != wantBoot {
					t.Errorf("boot type %s, want %s", parts[0].Type, wantBoot)
				}
				if !parts[0].Bootable {
					t.Error("boot partition not bootable")
				}
			} else {
				if pt.Label != "gpt" || len(pt.Partitions) != 5 {
					t.Fatalf("sfdisk: %+v, want gpt with 5 partitions", pt)
				}
				parts = pt.Partitions
				for i, p := range parts {
					if p.Name != labels[i] {
						t.Errorf("gpt partition %d name %q, want %q", i+1, p.Name, labels[i])
					}
				}
			}
			if parts[0].Start != 8192 {
				t.Errorf("boot starts at sector %d, want 8192 (4 MiB reserved)", parts[0].Start)
			}
			for i, p := range parts {
				if p.Start%8192 != 0 {
					t.Errorf("%s start %d not 4 MiB aligned", labels[i], p.Start)
				}
				if p.Size != sizes[i]*mib/512 {
					t.Errorf("%s size %d sectors, want %d MiB", labels[i], p.Size, sizes[i])
				}
			}

			// Filesystems as blkid and the fsck tools see them.
			for i, p := range parts {
				off, size := p.Start*512, p.Size*512
				b := blkidAt(t, img, off, size)
				if b["LABEL"] != labels[i] {
					t.Errorf("partition %d: blkid LABEL %q, want %q", i+1, b["LABEL"], labels[i])
				}
				if i == 0 {
					if b["TYPE"] != "vfat" || b["VERSION"] != c.fatVersion {
						t.Errorf("boot: blkid TYPE %q VERSION %q, want vfat %s", b["TYPE"], b["VERSION"], c.fatVersion)
					}
					fsckVfat(t, img, off, size)
					continue
				}
				if b["TYPE"] != "ext4" {
					t.Errorf("%s: blkid TYPE %q, want ext4", labels[i], b["TYPE"])
				}
				e2fsckCopy(t, img, off, size)
			}

			// The fingerprint verifies with md5sum -c on the extracted boot files. Its paths start with "/"
			// as meta-balena writes them, so they are made relative to the extracted directory first.
			bootDir := filepath.Join(t.TempDir(), "boot")
			must(t, os.MkdirAll(bootDir, 0o755))
			run(t, testtool.Need(t, "mcopy"), "-s", "-n", "-i", fmt.Sprintf("%s@@%d", img, parts[0].Start*512), "::/", bootDir+"/")
			cmd := exec.Command("sh", "-c", `sed 's#^\(\\\?[0-9a-f]\{32\}\)  /#\1  #' balenaos.fingerprint | md5sum -c --strict -`)
			cmd.Dir = bootDir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("md5sum -c balenaos.fingerprint: %v\n%s", err, out)
			}
			for _, f := range []string{"config.json", "device-type.json", "os-release", "balena-image", "image-version-info",
				"bzImage", "bzImage.sig", "EFI/BOOT/grub.cfg", "overlays/a.dtbo", "overlays/b.dtbo", "splash/balena-logo.png",
				"system-connections/wifi.nmconnection"} {
				if !fileExists(filepath.Join(bootDir, f)) {
					t.Errorf("boot partition lacks %s", f)
				}
			}

			// hostos inspect.
			r := inspectJSON(t, img)
			if r.DeviceType != c.deviceType || r.OSVersion != "2.99.1" || !r.Fingerprint.Verified || r.BootPartition != 1 {
				t.Errorf("inspect: device type %q, os %q, fingerprint %+v, boot %d", r.DeviceType, r.OSVersion, r.Fingerprint, r.BootPartition)
			}
			if r.Config["apiKey"] == "SECRETPROVISIONINGKEY" {
				t.Error("inspect shows apiKey unredacted")
			}

			// balena's own tools read what we wrote.
			var cfg map[string]any
			must(t, json.Unmarshal([]byte(runOracle(t, "read-config", img)), &cfg))
			if cfg["deviceType"] != c.deviceType || cfg["persistentLogging"] != false || cfg["hostname"] != "factory" || cfg["applicationId"] != float64(1234) {
				t.Errorf("balena-config-json read %v", cfg)
			}
			if v := strings.TrimSpace(runOracle(t, "os-version", img)); v != "2.99.1" {
				t.Errorf("balena-device-init OS version %q, want 2.99.1", v)
			}
			// fatfs shows 8.3-only directory names in upper case (mtools gives them the NT lower-case flag,
			// which the kernel honours and fatfs ignores), as on balena's own images.
			ls := strings.Fields(strings.ToLower(runOracle(t, "ls", img, "1", "/")))
			for _, want := range []string{"balenaos.fingerprint", "config.json", "device-type.json", "os-release", "overlays", "splash"} {
				if !contains(ls, want) {
					t.Errorf("balena-image-fs ls / = %v, lacks %s", ls, want)
				}
			}
			if got := runOracle(t, "read-file", img, "1", "/system-connections/wifi.nmconnection"); got != "[connection]\nid=wifi\ntype=wifi\n\n" {
				t.Errorf("balena-image-fs read the keyfile as %q", got)
			}
			if c.name == "msdos-fat16" {
				checkSpecialFiles(t, img, parts[1].Start*512)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// debugfsStat returns debugfs's stat of path in the ext4 at off.
func debugfs(t testing.TB, img string, off int64, req string) string {
	t.Helper()
	out, err := exec.Command(testtool.Need(t, "debugfs"), "-R", req, fmt.Sprintf("%s?offset=%d", img, off)).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %s: %v\n%s", req, err, out)
	}
	return string(out)
}

// checkSpecialFiles checks that what an unprivileged builder cannot make came through.
func checkSpecialFiles(t *testing.T, img string, off int64) {
	st := func(p string) string { return debugfs(t, img, off, "stat \""+p+"\"") }
	expect := func(p string, res ...string) {
		t.Helper()
		s := st(p)
		for _, r := range res {
			if !regexp.MustCompile(r).MatchString(s) {
				t.Errorf("%s: stat lacks %q:\n%s", p, r, s)
			}
		}
	}
	expect("/usr/bin/su", `Type: regular\s+Mode:\s+04755`, `User:\s+0\s+Group:\s+0\s`)
	expect("/usr/bin/wall", `Mode:\s+02755`, `Group:\s+5\s`)
	expect("/dev/null", `Type: character special`, `Mode:\s+0666`, `Device major/minor number: 01:03`)
	expect("/dev/sda", `Type: block special`, `Group:\s+6\s`, `Device major/minor number: 08:00`)
	expect("/usr/bin/vi", `Links: 2`)
	expect("/run/initctl", `Type: FIFO`, `Mode:\s+0600`)
	expect("/bin/su-abs", `Type: symlink`, `Fast link dest: "/usr/bin/su"`)
	expect("/bin/su-rel", `Type: symlink`, `Fast link dest: "../usr/bin/su"`)
	expect("/tmp", `Mode:\s+01777`)
	expect("/home/user/notes with space.txt", `User:\s+1000\s+Group:\s+1000\s`, `Mode:\s+0600`)
	expect("/usr/bin/ping", `security.capability`)
	mt := fixtureTime.Unix()
	expect("/usr/bin/su", fmt.Sprintf(`mtime: 0x%08x`, mt))
	vi, vim := inodeOf(t, st("/usr/bin/vi")), inodeOf(t, st("/usr/bin/vim"))
	if vi == "" || vi != vim {
		t.Errorf("vi and vim are not one inode: %s %s", vi, vim)
	}
	ea := debugfs(t, img, off, "ea_get -x /usr/bin/ping security.capability")
	if !strings.Contains(strings.ReplaceAll(ea, " ", ""), "0100000200200000") {
		t.Errorf("security.capability value: %s", ea)
	}
}

func inodeOf(t *testing.T, stat string) string {
	m := regexp.MustCompile(`Inode: (\d+)`).FindStringSubmatch(stat)
	if m == nil {
		return ""
	}
	return m[1]
}
