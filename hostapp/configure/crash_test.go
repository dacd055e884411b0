package configure

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/build"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/bootfs"
	"github.com/hostos/hostos/rootfs/fat"
	"github.com/hostos/hostos/tests/testtool"
)

// write is one WriteAt that reached the disk.
type write struct {
	off  int64
	data []byte
}

// recorder passes writes through to the disk and keeps them in order, with the sync points.
type recorder struct {
	disk.Disk
	writes []write
	syncs  []int // len(writes) at each Sync
}

func (r *recorder) WriteAt(p []byte, off int64) (int, error) {
	r.writes = append(r.writes, write{off, bytes.Clone(p)})
	return r.Disk.WriteAt(p, off)
}

func (r *recorder) Sync() error {
	r.syncs = append(r.syncs, len(r.writes))
	return r.Disk.Sync()
}

// testImage builds the default image into a temporary directory.
func testImage(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "debugfs", "mkfs.vfat", "mcopy"} {
		testtool.Need(t, tool)
	}
	spec, err := build.DefaultSpec()
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "crash.img")
	if _, err := build.Build(context.Background(), spec, img, build.WithEpoch(time.Unix(1600000000, 0))); err != nil {
		t.Fatal(err)
	}
	return img
}

// fsckAllowed are the complaints an interrupted copy-on-write may leave: space that is allocated but
// belongs to no file, long-name slots without their short entry, a stale free-cluster count. Never a
// damaged, truncated or cross-linked file.
var fsckAllowed = regexp.MustCompile(`(?i)lost|orphan|free cluster summary|unused|long file name|reclaim|not in use|fsinfo|FATs differ but appear to be intact|using first FAT`)

// TestCrashAtEveryWrite runs one configure (a config.json edit that grows it past a cluster, a new Wi-Fi
// keyfile) while recording every write, then replays each prefix of those writes onto
// the original boot partition, as if power failed after that write: config.json always parses as the
// old or the new document, the keyfile is absent or complete, and fsck.vfat finds nothing worse than
// lost clusters.
func TestCrashAtEveryWrite(t *testing.T) {
	img := testImage(t)
	d, err := disk.Open(img, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	boot, err := bootfs.Locate(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	pristine := make([]byte, boot.Size)
	if _, err := d.ReadAt(pristine, boot.Start); err != nil {
		t.Fatal(err)
	}
	oldFS, err := fat.Open(bytes.NewReader(pristine), 0, boot.Size)
	if err != nil {
		t.Fatal(err)
	}
	oldConfig, err := oldFS.ReadFile("/config.json")
	if err != nil {
		t.Fatal(err)
	}

	rec := &recorder{Disk: d}
	tg, err := Open(rec)
	if err != nil {
		t.Fatal(err)
	}
	wifi := config.Wifi{SSID: "crash test", PSK: "0123456789"}
	o := Options{Hostname: "after-crash", Wifi: &wifi, SSHKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPnUgeUH1kjifcsch3u997KHN3QPn1BxmWqyhWxgq4PA k"},
		Set: []Setting{{Key: "padding", Value: strings.Repeat("x", 9000)}}, Time: time.Unix(1700000000, 0)}
	res, err := tg.Apply(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Written) != 2 {
		t.Fatalf("written %v", res.Written)
	}
	newFS, err := fat.Open(d, boot.Start, boot.Size)
	if err != nil {
		t.Fatal(err)
	}
	newConfig, err := newFS.ReadFile("/config.json")
	if err != nil {
		t.Fatal(err)
	}
	newWifi, err := wifi.Keyfile()
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) < 4 || len(rec.syncs) < 2 {
		t.Fatalf("%d writes, %d syncs: too few to be crash-safe", len(rec.writes), len(rec.syncs))
	}
	for _, w := range rec.writes {
		if w.off < boot.Start || w.off+int64(len(w.data)) > boot.Start+boot.Size {
			t.Fatalf("write at %d+%d outside the boot partition", w.off, len(w.data))
		}
	}

	fsck := testtool.Need(t, "fsck.vfat")
	buf := bytes.Clone(pristine)
	tmp := filepath.Join(t.TempDir(), "boot.img")
	for n := 0; n <= len(rec.writes); n++ {
		if n > 0 {
			w := rec.writes[n-1]
			copy(buf[w.off-boot.Start:], w.data)
		}
		f, err := fat.Open(bytes.NewReader(buf), 0, boot.Size)
		if err != nil {
			t.Fatalf("after %d writes: %v", n, err)
		}
		c, err := f.ReadFile("/config.json")
		if err != nil || !bytes.Equal(c, oldConfig) && !bytes.Equal(c, newConfig) {
			t.Fatalf("after %d writes: config.json is neither old nor new (%v):\n%.200s", n, err, c)
		}
		if _, err := config.ParseConfig(c); err != nil {
			t.Fatalf("after %d writes: %v", n, err)
		}
		k, err := f.ReadFile("/system-connections/resin-wifi")
		if err != nil && !errors.Is(err, fs.ErrNotExist) || err == nil && !bytes.Equal(k, newWifi) {
			t.Fatalf("after %d writes: resin-wifi torn (%v):\n%q", n, err, k)
		}
		if err := f.Walk(func(string, fat.DirEntry) error { return nil }); err != nil {
			t.Fatalf("after %d writes: %v", n, err)
		}
		if err := os.WriteFile(tmp, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(fsck, "-n", tmp).CombinedOutput()
		if n == len(rec.writes) && err != nil {
			t.Fatalf("finished: fsck.vfat -n: %v\n%s", err, out)
		}
		if err != nil {
			for _, l := range fsckComplaints(string(out)) {
				if !fsckAllowed.MatchString(l) {
					t.Fatalf("after %d writes fsck.vfat complains: %q\n%s", n, l, out)
				}
			}
		}
	}
	t.Logf("%d writes, syncs after writes %v: every prefix leaves old or new", len(rec.writes), rec.syncs)
}

// fsckComplaints are fsck.vfat's lines that describe a problem (not its banner or summary).
func fsckComplaints(out string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		cont := strings.HasPrefix(l, " ") // an indented line continues the complaint above it
		l = strings.TrimSpace(l)
		switch {
		case l == "", cont, strings.HasPrefix(l, "fsck.fat "), strings.HasPrefix(l, "Leaving"), strings.Contains(l, " files, "),
			strings.HasPrefix(l, "/"), strings.HasPrefix(l, "Checking"), strings.HasPrefix(l, "Starting"):
			// banner, summary, and the path lines that introduce a complaint
		default:
			ls = append(ls, l)
		}
	}
	return ls
}
