package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostos/hostos/tests/testtool"
)

const (
	repairBootStart = 1 << 20
	repairBootSize  = 10 << 20
)

// repairImage is a disk image with an msdos table (sfdisk) and, in partition 1, a FAT16 resin-boot file
// system of 512-byte clusters (mkfs.vfat) holding a.bin (clusters 2-3) and config.json (cluster 4) (mcopy).
func repairImage(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"sfdisk", "mkfs.vfat", "mcopy", "fsck.vfat"} {
		testtool.Need(t, tool)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, repairBootStart+repairBootSize+(1<<20)); err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("label: dos\nstart=2048, size=20480, type=e\n", "sfdisk", "-q", img)
	run("", "mkfs.vfat", "-F", "16", "-s", "1", "-n", "resin-boot", "--offset=2048", img, "10240")
	a := filepath.Join(dir, "a.bin")
	cfg := filepath.Join(dir, "config.json")
	os.WriteFile(a, bytes.Repeat([]byte("a"), 1024), 0o644)
	os.WriteFile(cfg, []byte(`{"deviceType":"genericx86-64-ext"}`), 0o644)
	drive := img + "@@" + "1048576"
	run("", "mcopy", "-i", drive, a, cfg, "::/")
	return img
}

// setFAT16 sets FAT16 entry c to v in the first n FAT copies of the boot partition of img.
func setFAT16(t *testing.T, img string, c, v uint16, n int) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, repairBootStart); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	reserved, fatSectors := int64(le.Uint16(bs[14:])), int64(le.Uint16(bs[22:]))
	for i := range int64(n) {
		at := repairBootStart + (reserved+i*fatSectors)*512 + int64(c)*2
		if _, err := f.WriteAt(le.AppendUint16(nil, v), at); err != nil {
			t.Fatal(err)
		}
	}
}

// fsckBoot runs fsck.vfat -n on a copy of the boot partition and reports whether it found nothing to say.
func fsckBoot(t *testing.T, img string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(t.TempDir(), "boot.img")
	if err := os.WriteFile(part, b[repairBootStart:repairBootStart+repairBootSize], 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("fsck.vfat", "-n", part).CombinedOutput()
	return string(out), err == nil && len(strings.Split(strings.TrimSpace(string(out)), "\n")) == 2
}

func runRepair(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"repair"}, args...))
	err := cmd.Execute()
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error %q: not one line", err)
		}
		out.WriteString("error: " + err.Error() + "\n")
		return out.String(), exitCode(err)
	}
	return out.String(), 0
}

// TestRepairCommand: hostos repair finds what fsck.vfat finds, --dry-run writes nothing, a repair of what is
// safe ends with fsck.vfat -n clean and exit 0, and a cross-link is reported and left, exit 1.
func TestRepairCommand(t *testing.T) {
	t.Run("bad-chain-and-fats-differ", func(t *testing.T) {
		img := repairImage(t)
		setFAT16(t, img, 3, 0xfff7, 2)   // a.bin's second cluster points to one marked bad
		setFAT16(t, img, 100, 0xffff, 1) // a lost cluster, in the first FAT only
		if out, clean := fsckBoot(t, img); clean {
			t.Fatalf("fsck.vfat -n finds the damage clean:\n%s", out)
		}
		sum := testtool.SHA256(t, img)
		out, code := runRepair(t, "--dry-run", img)
		if code != 1 || !strings.Contains(out, "/a.bin: chain broken") || !strings.Contains(out, "fat copy 2 differs") || !strings.Contains(out, "nothing written") {
			t.Errorf("repair --dry-run: exit %d:\n%s", code, out)
		}
		if testtool.SHA256(t, img) != sum {
			t.Error("repair --dry-run changed the image")
		}
		out, code = runRepair(t, img)
		t.Logf("repair:\n%s", out)
		if code != 0 || !strings.Contains(out, "repaired: clean") {
			t.Errorf("repair: exit %d:\n%s", code, out)
		}
		if out, clean := fsckBoot(t, img); !clean {
			t.Errorf("fsck.vfat -n after repair:\n%s", out)
		}
		out, code = runRepair(t, "--json", img)
		var res repairResult
		if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || !res.Clean || !res.Before.Clean() || res.Before.Files != 2 {
			t.Errorf("repair --json of the repaired image: exit %d, %v:\n%s", code, err, out)
		}
	})
	t.Run("cross-link", func(t *testing.T) {
		img := repairImage(t)
		setFAT16(t, img, 2, 4, 2) // a.bin continues into config.json's cluster
		if out, _ := fsckBoot(t, img); !strings.Contains(out, "share clusters") {
			t.Fatalf("fsck.vfat -n does not see the cross-link:\n%s", out)
		}
		out, code := runRepair(t, img)
		t.Logf("repair:\n%s", out)
		if code != 1 || !strings.Contains(out, "/config.json and /a.bin share cluster 4") && !strings.Contains(out, "/a.bin and /config.json share cluster 4") ||
			!strings.Contains(out, "copy both off") {
			t.Errorf("repair of a cross-link: exit %d:\n%s", code, out)
		}
		if out, _ := fsckBoot(t, img); !strings.Contains(out, "share clusters") || strings.Contains(out, "Reclaimed") {
			t.Errorf("fsck.vfat -n after repair: want the cross-link left and the lost cluster freed:\n%s", out)
		}
	})
}
