package fat

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// repairPart runs Repair on p through the image file.
func repairPart(t *testing.T, p part) (before, after Report, err error) {
	t.Helper()
	f, err := os.OpenFile(p.img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Repair(f, p.off, p.size)
}

// fsckClean reports whether fsck.vfat -n finds nothing at all to say beyond its banner and summary.
func fsckClean(t *testing.T, p part) (string, bool) {
	t.Helper()
	out, code := p.fsck(t)
	return out, code == 0 && len(strings.Split(strings.TrimSpace(out), "\n")) == 2
}

// TestRepair: every damage but a cross-link is repaired to a file system fsck.vfat -n finds clean, and the
// files the damage did not touch keep their bytes; a cross-link is left as it was, with both files.
func TestRepair(t *testing.T) {
	config := []byte(`{"deviceType":"raspberrypi4-64"}`)
	for _, d := range damages() {
		t.Run(strings.ReplaceAll(d.name, " ", "-"), func(t *testing.T) {
			p := crossFixture(t)
			d.mutate(t, p)
			if out, clean := fsckClean(t, p); clean {
				t.Fatalf("fsck.vfat -n finds the damage clean:\n%s", out)
			}
			envBefore, _ := p.read(t).ReadFile("/grub/grubenv")
			before, after, err := repairPart(t, p)
			if err != nil {
				t.Fatal(err)
			}
			if before.Clean() {
				t.Fatal("Repair's report before is clean")
			}
			out, clean := fsckClean(t, p)
			if d.name == "cross-link" {
				if kinds := findingKinds(after); !slices.Contains(kinds, CrossLink) || clean {
					t.Errorf("cross-link after Repair: %v; fsck.vfat -n:\n%s", kinds, out)
				}
				if env, err := p.read(t).ReadFile("/grub/grubenv"); err != nil || !bytes.Equal(env, envBefore) {
					t.Errorf("grubenv after Repair: %q, %v", env, err)
				}
			} else {
				if !after.Clean() || !clean {
					t.Errorf("after Repair: %v; fsck.vfat -n:\n%s", after.Findings, out)
				}
				if _, err := p.open(t).FS.Check(); err != nil {
					t.Error(err)
				}
			}
			if got, err := p.read(t).ReadFile("/config.json"); err != nil || !bytes.Equal(got, config) {
				t.Errorf("config.json after Repair: %q, %v", got, err)
			}
			// Repairing again finds nothing to do and writes nothing.
			sum := p.sum(t)
			if _, _, err := repairPart(t, p); err != nil {
				t.Fatal(err)
			}
			if d.name != "cross-link" && p.sum(t) != sum {
				t.Error("a second Repair changed the image")
			}
		})
	}
}

// TestRepairCleanWritesNothing: a clean file system is left byte for byte.
func TestRepairCleanWritesNothing(t *testing.T) {
	p := crossFixture(t)
	sum := p.sum(t)
	before, after, err := repairPart(t, p)
	if err != nil || !before.Clean() || !after.Clean() {
		t.Fatalf("Repair of a clean file system: %v, %v, %v", before.Findings, after.Findings, err)
	}
	if p.sum(t) != sum {
		t.Error("Repair changed a clean file system")
	}
}

// TestRepairRefusesBetterCopy: when the first FAT has a broken chain that the second copy does not, the
// copy may be the good one: Repair refuses and changes nothing.
func TestRepairRefusesBetterCopy(t *testing.T) {
	p := crossFixture(t)
	env := p.object(t, "/grub/grubenv")
	p.setFAT(t, env.chain[1], 0, 1)
	sum := p.sum(t)
	_, _, err := repairPart(t, p)
	if !errors.Is(err, ErrNotRepaired) || !strings.Contains(err.Error(), "fat copy 2") {
		t.Errorf("Repair: %v, want ErrNotRepaired naming fat copy 2", err)
	}
	if p.sum(t) != sum {
		t.Error("the refused Repair changed the image")
	}
}

// TestRepairPowerLoss cuts the power after every sector write of a repair with every step to do (orphan
// long names, a broken chain, an overlong chain, lost clusters, differing copies): whatever was written,
// the file system is no worse (no problem kinds that were not there before, config.json intact), and an
// uninterrupted repair leaves it clean.
func TestRepairPowerLoss(t *testing.T) {
	base := crossFixture(t)
	tool(t, "mcopy", "-i", base.drive(), writeHost(t, t.TempDir(), "resin-wifi-connection", bytes.Repeat([]byte("w"), 2000)), "::/resin-wifi-connection")
	env, logo := base.object(t, "/grub/grubenv"), base.object(t, "/splash/balena-logo.png")
	base.setEntry(t, "/resin-wifi-connection", 0, []byte{0xe5})  // orphan long name, lost clusters
	base.setFAT(t, logo.chain[0], 0xfff7, 0)                     // broken chain
	base.setEntry(t, "/grub/grubenv", 28, []byte{0x10, 0, 0, 0}) // size shorter than the chain
	base.setFAT(t, env.chain[1]+40, 0xffff, 1)                   // lost, in the first FAT only
	config, _ := base.read(t).ReadFile("/config.json")
	r, err := base.read(t).Check()
	if err != nil {
		t.Fatal(err)
	}
	had := map[Kind]bool{}
	for _, k := range findingKinds(r) {
		had[k] = true
	}
	src, err := os.Open(base.img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for budget := 0; ; budget++ {
		p := base
		p.img = filepath.Join(t.TempDir(), "crash.img")
		f, err := os.Create(p.img)
		if err != nil {
			t.Fatal(err)
		}
		if err := sparseCopy(f, src, 0, base.off+base.size); err != nil {
			t.Fatal(err)
		}
		dev := &powerLoss{f: f, budget: budget}
		_, _, rerr := Repair(dev, p.off, p.size)
		f.Close()
		if rerr != nil {
			t.Fatalf("power lost after %d sector writes: %v", budget, rerr)
		}
		got, err := p.read(t).Check()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range findingKinds(got) {
			if !had[k] && k != FreeCount {
				t.Errorf("power lost after %d sector writes: new problem %s: %v", budget, k, got.Findings)
			}
		}
		if b, err := p.read(t).ReadFile("/config.json"); err != nil || !bytes.Equal(b, config) {
			t.Errorf("power lost after %d sector writes: config.json %q, %v", budget, b, err)
		}
		if b, err := p.read(t).ReadFile("/grub/grubenv"); err != nil || string(b) != strings.Repeat("#", 16) {
			t.Errorf("power lost after %d sector writes: grubenv %q, %v", budget, b, err)
		}
		if dev.writes <= budget {
			if out, clean := fsckClean(t, p); !got.Clean() || !clean {
				t.Errorf("uninterrupted repair: %v; fsck.vfat -n:\n%s", got.Findings, out)
			}
			t.Logf("%d sector writes", dev.writes)
			break
		}
	}
}

// TestCheckRepairFAT32: on FAT32 (root directory in a chain, FSInfo), a file system made by the tools is
// clean for Check; lost clusters in the first FAT only and a wrong FSInfo free count are found as
// fsck.vfat -n finds them, and repaired to clean.
func TestCheckRepairFAT32(t *testing.T) {
	needTools(t, "mkfs.vfat", "mcopy", "fsck.vfat")
	p := makePart(t, 32, mib, 40*mib, "-s", "1")
	host := t.TempDir()
	tool(t, "mmd", "-i", p.drive(), "::/EFI", "::/EFI/BOOT")
	tool(t, "mcopy", "-i", p.drive(), writeHost(t, host, "grubenv", bytes.Repeat([]byte("#"), 1024)), "::/EFI/BOOT/grubenv")
	tool(t, "mcopy", "-i", p.drive(), writeHost(t, host, "resin-wifi-connection", []byte("[connection]\n")), "::/resin-wifi-connection")
	r, err := p.read(t).Check()
	if err != nil || !r.Clean() || r.Bits != 32 || r.Files != 2 || r.Dirs != 3 {
		t.Fatalf("Check of a fresh FAT32: %+v, %v", r, err)
	}
	env := p.object(t, "/EFI/BOOT/grubenv")
	p.setFAT(t, env.chain[1]+100, 0x0fffffff, 1)
	fsys := p.read(t)
	at, _, err := fsys.fsinfo()
	if err != nil || at == 0 {
		t.Fatalf("no FSInfo sector: %v", err)
	}
	f, err := os.OpenFile(p.img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{5, 0, 0, 0}, p.off+at+fsinfoFree); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, _ := p.fsck(t)
	for _, want := range []string{"FATs differ", "Free cluster summary wrong", "Reclaimed 1 unused cluster"} {
		if !strings.Contains(out, want) {
			t.Errorf("fsck.vfat -n does not say %q:\n%s", want, out)
		}
	}
	before, after, err := repairPart(t, p)
	if err != nil {
		t.Fatal(err)
	}
	got := findingKinds(before)
	slices.Sort(got)
	if want := []Kind{FATsDiffer, FreeCount, LostClusters}; !slices.Equal(got, want) {
		t.Errorf("Check finds %v, want %v", before.Findings, want)
	}
	if out, clean := fsckClean(t, p); !after.Clean() || !clean {
		t.Errorf("after Repair: %v; fsck.vfat -n:\n%s", after.Findings, out)
	}
}
