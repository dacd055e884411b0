package tests

import (
	"encoding/json"
	"fmt"
	"github.com/hostos/hostos/tests/testtool"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// shellImage makes a balenaOS-shaped image the way a plain shell script would: sfdisk, mkfs.vfat, mcopy and
// mkfs.ext4, with no hostos involved.
func shellImage(t *testing.T, table string, fatBits int, bootLabel string) string {
	t.Helper()
	for _, tool := range []string{"sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4"} {
		testtool.Need(t, tool)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "shell.img")
	must(t, os.WriteFile(filepath.Join(dir, "layout"), []byte(map[string]string{
		"msdos": "label: dos\nlabel-id: 0x12345678\nunit: sectors\n" +
			"start=8192, size=81920, type=e, bootable\nstart=90112, size=655360, type=83\nstart=745472, size=655360, type=83\n" +
			"start=1400832, type=f\nstart=1409024, size=40960, type=83\nstart=1458176, size=393216, type=83\n",
		"gpt": "label: gpt\nunit: sectors\nfirst-lba: 34\n" +
			"start=8192, size=81920, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=resin-boot\n" +
			"start=90112, size=655360, name=resin-rootA\nstart=745472, size=655360, name=resin-rootB\n" +
			"start=1400832, size=40960, name=resin-state\nstart=1441792, size=393216, name=resin-data\n",
	}[table]), 0o644))
	run(t, "truncate", "-s", "1000M", img)
	out, err := exec.Command("sh", "-c", fmt.Sprintf("sfdisk -q %s < %s", img, filepath.Join(dir, "layout"))).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	pt := sfdiskJSON(t, img)
	var parts []sfdiskPart
	for _, p := range pt.Partitions {
		if p.Type != "f" {
			parts = append(parts, p)
		}
	}
	boot := filepath.Join(dir, "boot")
	must(t, os.MkdirAll(filepath.Join(boot, "system-connections"), 0o755))
	must(t, os.WriteFile(filepath.Join(boot, "config.json"), []byte(`{"deviceType":"raspberrypi3","deviceApiKey":"SECRETDEVICEKEY","uuid":"0123456789abcdef0123456789abcdef"}`), 0o644))
	must(t, os.WriteFile(filepath.Join(boot, "device-type.json"), []byte(`{"slug":"raspberrypi3","arch":"armv7hf","configuration":{"config":{"partition":{"primary":1},"path":"/config.json"}}}`), 0o644))
	must(t, os.WriteFile(filepath.Join(boot, "os-release"), []byte("NAME=\"balenaOS\"\nVERSION_ID=\"2.50.1\"\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(boot, "system-connections", "resin-wifi"), []byte("[connection]\nid=resin-wifi\ntype=wifi\n"), 0o644))
	fatArgs := []string{"-F", fmt.Sprint(fatBits), "-n", bootLabel, "--offset", fmt.Sprint(parts[0].Start), img, fmt.Sprint(parts[0].Size / 2)}
	if fatBits == 32 {
		fatArgs = append([]string{"-s", "1"}, fatArgs...)
	}
	run(t, "mkfs.vfat", fatArgs...)
	files, _ := filepath.Glob(filepath.Join(boot, "*"))
	run(t, "mcopy", append([]string{"-s", "-i", fmt.Sprintf("%s@@%d", img, parts[0].Start*512)}, append(files, "::/")...)...)
	root := filepath.Join(dir, "root")
	must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "usr", "lib"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "usr", "lib", "os-release"), []byte("NAME=\"balenaOS\"\nVERSION_ID=\"2.51.0\"\n"), 0o644))
	must(t, os.Symlink("../usr/lib/os-release", filepath.Join(root, "etc", "os-release")))
	labels := []string{"", "resin-rootA", "resin-rootB", "resin-state", "resin-data"}
	for i := 1; i < 5; i++ {
		args := []string{"-q", "-F", "-L", labels[i], "-E", fmt.Sprintf("offset=%d", parts[i].Start*512)}
		if i == 1 {
			args = append(args, "-d", root)
		}
		run(t, "mkfs.ext4", append(args, img, fmt.Sprintf("%dk", parts[i].Size/2))...)
	}
	return img
}

// TestInspectForeignImages: inspect reads images made without hostos: MBR with logical partitions or GPT,
// FAT16 or FAT32, an upper-case RESIN-BOOT label; secrets are redacted unless asked for.
func TestInspectForeignImages(t *testing.T) {
	t.Parallel() // own images and work directories: runs beside the other long tests
	cases := []struct {
		table string
		bits  int
		label string
	}{
		{"msdos", 16, "RESIN-BOOT"},
		{"msdos", 32, "resin-boot"},
		{"gpt", 16, "resin-boot"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-fat%d-%s", c.table, c.bits, c.label), func(t *testing.T) {
			img := shellImage(t, c.table, c.bits, c.label)
			before := testtool.SHA256(t, img)
			r := inspectJSON(t, img)
			if r.PartitionTable != c.table || r.DeviceType != "raspberrypi3" || r.OSVersion != "2.51.0" || r.BootPartition != 1 {
				t.Errorf("inspect: %+v", r)
			}
			var labels []string
			for _, p := range r.Partitions {
				labels = append(labels, fmt.Sprintf("%d:%s:%s", p.Number, p.Label, p.Filesystem))
			}
			last := map[string]string{"msdos": "5:resin-state:ext4 6:resin-data:ext4", "gpt": "4:resin-state:ext4 5:resin-data:ext4"}[c.table]
			want := fmt.Sprintf("1:%s:vfat 2:resin-rootA:ext4 3:resin-rootB:ext4 %s", c.label, last)
			if got := strings.Join(labels, " "); got != want {
				t.Errorf("partitions %s, want %s", got, want)
			}
			if r.Config["deviceApiKey"] == "SECRETDEVICEKEY" {
				t.Error("deviceApiKey shown unredacted")
			}
			if r.Fingerprint.Present {
				t.Error("no fingerprint was written, inspect says present")
			}
			text := mustHostos(t, nil, nil, "inspect", img)
			if strings.Contains(text, "SECRETDEVICEKEY") || !strings.Contains(text, "2.51.0") {
				t.Errorf("inspect text:\n%s", text)
			}
			var full inspectReport
			must(t, json.Unmarshal([]byte(mustHostos(t, nil, nil, "inspect", "--json", "--show-secrets", img)), &full))
			if full.Config["deviceApiKey"] != "SECRETDEVICEKEY" {
				t.Errorf("--show-secrets: %v", full.Config)
			}
			if testtool.SHA256(t, img) != before {
				t.Error("inspect changed the image")
			}
		})
	}
}

// TestInspectBadInputs: not an image, a truncated image, a directory: one line, non-zero exit.
func TestInspectBadInputs(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.img")
	must(t, os.WriteFile(junk, []byte(strings.Repeat("not a disk image ", 4096)), 0o644))
	trunc := filepath.Join(dir, "trunc.img")
	must(t, os.WriteFile(trunc, make([]byte, 300), 0o644))
	for _, c := range []struct{ path, want string }{
		{junk, "junk.img"}, {trunc, "trunc.img"}, {dir, "directory"}, {filepath.Join(dir, "missing.img"), "missing.img"},
	} {
		r := hostos(t, nil, nil, "inspect", c.path)
		msg := strings.TrimSpace(r.stderr)
		if r.code == 0 || strings.Contains(msg, "\n") || !strings.Contains(msg, c.want) {
			t.Errorf("inspect %s: exit %d, stderr %q", c.path, r.code, r.stderr)
		}
	}
}
