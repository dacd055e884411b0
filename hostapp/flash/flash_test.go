package flash

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/tests/testtool"
)

const mib = 1 << 20

// makeImage writes a sparse raw image: random data in a few ranges (one of them half zeros, one unaligned)
// and holes elsewhere. It returns the image's bytes too, for comparisons (images here are small).
func makeImage(t *testing.T, path string, size int64) []byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 1))
	img := make([]byte, size)
	for _, c := range []struct{ off, n int64 }{{0, 4096}, {mib + 100, 3 * 4096}, {5 * mib, 2 * mib}, {size - 4000, 3000}} {
		b := img[c.off : c.off+c.n]
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if c.off == 5*mib {
			clear(b[:mib/2]) // zero blocks inside a data extent
		}
		if _, err := f.WriteAt(b, c.off); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func compressTo(t *testing.T, raw, out, kind string) {
	t.Helper()
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	switch kind {
	case "zst", "xz":
		err = disk.Compress(context.Background(), raw, o, kind, nil)
	case "gz":
		b, _ := os.ReadFile(raw)
		zw := gzip.NewWriter(o)
		if _, err = zw.Write(b); err == nil {
			err = zw.Close()
		}
	case "zip":
		b, _ := os.ReadFile(raw)
		zw := zip.NewWriter(o)
		w, _ := zw.Create("disk.img")
		if _, err = w.Write(b); err == nil {
			err = zw.Close()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

func writeBmap(t *testing.T, raw, out string) {
	t.Helper()
	var b bytes.Buffer
	if err := disk.Bmap(raw, &b, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFlashToFile flashes each kind of image to a regular file, which then holds exactly the image, and
// checks the map Flash chose and that it wrote only mapped bytes.
func TestFlashToFile(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	want := makeImage(t, raw, 9*mib+500)
	cases := []struct {
		name, kind string
		bmap       bool
		wantMap    string
	}{
		{"raw holes", "", false, "holes"},
		{"raw bmap", "", true, "bmap"},
		{"zst zeros", "zst", false, "zeros"},
		{"zst bmap", "zst", true, "bmap"},
		{"xz", "xz", false, "zeros"},
		{"gz bmap", "gz", true, "bmap"},
		{"zip", "zip", false, "zeros"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			img := filepath.Join(d, "disk.img")
			if tc.kind == "" {
				if err := disk.SparseCopy(img, raw); err != nil {
					t.Fatal(err)
				}
			} else {
				img += "." + tc.kind
				compressTo(t, raw, img, tc.kind)
			}
			if tc.bmap {
				writeBmap(t, raw, filepath.Join(d, "disk.img.bmap"))
			}
			before := testtool.SHA256(t, img)
			out := filepath.Join(d, "out.img")
			os.WriteFile(out, bytes.Repeat([]byte{0xee}, 20*mib), 0o644) // old content must go
			var steps []string
			res, err := Flash(context.Background(), img, out, WithProgress(func(step string, done, total int64) {
				if len(steps) == 0 || steps[len(steps)-1] != step {
					steps = append(steps, step)
				}
			}))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(out)
			if !bytes.Equal(got, want) {
				t.Fatalf("flashed file differs from the image (%d vs %d bytes)", len(got), len(want))
			}
			if res.Map != tc.wantMap || !res.Verified || res.ImageSize != int64(len(want)) {
				t.Fatalf("result %+v", res)
			}
			if res.Written > 3*mib || res.Written < mib {
				t.Fatalf("wrote %d bytes; the image has 1.5 MiB of non-zero data in 2 MiB of extents", res.Written)
			}
			if strings.Join(steps, ",") != "write,verify" {
				t.Fatalf("progress steps %v", steps)
			}
			if testtool.SHA256(t, img) != before {
				t.Fatal("the image changed")
			}
		})
	}
}

// TestFlashVerifyCatchesFlip plants a flipped byte between the write and the verify pass.
func TestFlashVerifyCatchesFlip(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	makeImage(t, raw, 9*mib)
	out := filepath.Join(dir, "out.img")
	_, err := Flash(context.Background(), raw, out, WithBeforeVerify(func(dev string) error {
		return flipByte(dev, 5*mib+mib/2+12345)
	}))
	if !errors.Is(err, ErrVerify) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v, want a one-line verify failure", err)
	}
	// Without verify the flip goes unnoticed: the hook runs only before a verify.
	if _, err := Flash(context.Background(), raw, out, WithoutVerify(), WithBeforeVerify(func(string) error { return errors.New("called") })); err != nil {
		t.Fatal(err)
	}
}

func flipByte(path string, off int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return err
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b[:], off); err != nil {
		return err
	}
	return f.Sync()
}

// TestFlashRejects: bad inputs give one-line errors and change no input byte.
func TestFlashRejects(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	makeImage(t, raw, 9*mib)
	zst := filepath.Join(dir, "disk.img.zst")
	compressTo(t, raw, zst, "zst")
	zb, _ := os.ReadFile(zst)
	trunc := filepath.Join(dir, "trunc.img.zst")
	os.WriteFile(trunc, zb[:len(zb)/2], 0o644)
	writeBmap(t, raw, filepath.Join(dir, "trunc.img.bmap"))

	stale := filepath.Join(dir, "stale.img")
	disk.SparseCopy(stale, raw)
	writeBmap(t, raw, stale+".bmap")
	flipByte(stale, 12)

	empty := filepath.Join(dir, "empty.img")
	os.WriteFile(empty, nil, 0o644)
	for _, tc := range []struct{ name, img, dev, want string }{
		{"missing image", filepath.Join(dir, "nope.img"), filepath.Join(dir, "o1"), "no such file"},
		{"empty image", empty, filepath.Join(dir, "o2"), "empty"},
		{"device is the image", raw, raw, "is the input"},
		{"device is a directory", raw, dir, "not a block device or regular file"},
		{"character device", raw, "/dev/null", "not a block device or regular file"},
		{"truncated stream", trunc, filepath.Join(dir, "o3"), "ends at byte"},
		{"image differs from its map", stale, filepath.Join(dir, "o4"), "do not match the checksum of its block map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sum string
			if fi, err := os.Stat(tc.img); err == nil && fi.Mode().IsRegular() {
				sum = testtool.SHA256(t, tc.img)
			}
			_, err := Flash(context.Background(), tc.img, tc.dev)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line with %q", err, tc.want)
			}
			if sum != "" && testtool.SHA256(t, tc.img) != sum {
				t.Fatal("the image changed")
			}
		})
	}
}

// fakeSys builds a sysfs with disk sda (8:0, partitions sda1 8:1 and sda2 8:2) and a mount table.
func fakeSys(t *testing.T, removable, mountinfo, holder string) system {
	t.Helper()
	root := t.TempDir()
	w := func(p, s string) {
		p = filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("devices/pci0/usb1/block/sda/dev", "8:0")
	w("devices/pci0/usb1/block/sda/removable", removable)
	for _, p := range []string{"1", "2"} {
		w("devices/pci0/usb1/block/sda/sda"+p+"/dev", "8:"+p)
		w("devices/pci0/usb1/block/sda/sda"+p+"/partition", p)
		os.MkdirAll(filepath.Join(root, "devices/pci0/usb1/block/sda/sda"+p+"/holders"), 0o755)
	}
	if holder != "" {
		os.MkdirAll(filepath.Join(root, "devices/pci0/usb1/block/sda/sda2/holders", holder), 0o755)
	}
	os.MkdirAll(filepath.Join(root, "dev/block"), 0o755)
	for _, l := range []struct{ dev, to string }{{"8:0", "sda"}, {"8:1", "sda/sda1"}, {"8:2", "sda/sda2"}} {
		if err := os.Symlink("../../devices/pci0/usb1/block/"+l.to, filepath.Join(root, "dev/block", l.dev)); err != nil {
			t.Fatal(err)
		}
	}
	w("mountinfo", mountinfo)
	return system{sysRoot: root, mountinfo: filepath.Join(root, "mountinfo")}
}

func TestCheckDevice(t *testing.T) {
	const rootOnNVMe = "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw"
	for _, tc := range []struct {
		name, removable, mountinfo, holder string
		minor                              uint32
		want                               error
	}{
		{"removable and unused", "1", rootOnNVMe, "", 0, nil},
		{"a partition names its disk", "1", rootOnNVMe, "", 1, nil},
		{"system disk", "1", "22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw", "", 0, ErrSystem},
		{"mounted partition", "1", rootOnNVMe + "\n40 22 8:1 / /media/card rw - vfat /dev/sda1 rw", "", 0, ErrMounted},
		{"mounted by source", "1", rootOnNVMe + "\n40 22 0:55 / /media/b\\040x rw - btrfs /dev/sda2 rw", "", 0, ErrMounted},
		{"held by device-mapper", "1", rootOnNVMe, "dm-0", 0, ErrMounted},
		{"fixed disk", "0", rootOnNVMe, "", 0, ErrFixedDisk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := fakeSys(t, tc.removable, tc.mountinfo, tc.holder)
			err := checkDevice(sys, "/dev/sdX", 8, tc.minor)
			if !errors.Is(err, tc.want) || (err != nil && strings.Contains(err.Error(), "\n")) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if err := checkDevice(fakeSys(t, "1", rootOnNVMe, ""), "/dev/sdX", 8, 7); err == nil {
		t.Fatal("an unknown device number passed")
	}
}

// TestFlashLoopDevice flashes onto a loop device (root only): the mapped ranges equal the image, the rest
// keeps the device's old bytes, verify catches a flip on the device, and a mounted device is refused with
// and without --force.
func TestFlashLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		testtool.Missing(t, "loop devices need root")
	}
	losetup := testtool.Need(t, "losetup")
	mkfs := testtool.Need(t, "mkfs.ext4")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	want := makeImage(t, raw, 9*mib)
	zst := raw + ".zst"
	compressTo(t, raw, zst, "zst")
	writeBmap(t, raw, raw+".bmap")

	backing := filepath.Join(dir, "backing")
	old := bytes.Repeat([]byte{0xa5}, 12*mib)
	if err := os.WriteFile(backing, old, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(losetup, "--find", "--show", backing).CombinedOutput()
	if err != nil {
		testtool.Missing(t, "losetup: %v: %s", err, b)
	}
	loop := strings.TrimSpace(string(b))
	t.Cleanup(func() { exec.Command(losetup, "-d", loop).Run() })

	// A loop device is not removable: without --force it is refused.
	if _, err := Flash(context.Background(), zst, loop); !errors.Is(err, ErrFixedDisk) {
		t.Fatalf("err = %v, want a refusal of a fixed disk", err)
	}
	res, err := Flash(context.Background(), zst, loop, WithForce())
	if err != nil {
		t.Fatal(err)
	}
	if res.Map != "bmap" || !res.Verified || !strings.Contains(res.ReadBack, "BLKFLSBUF") {
		t.Fatalf("result %+v", res)
	}
	got, err := os.ReadFile(loop)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := os.ReadFile(raw + ".bmap")
	bm, err := disk.ParseBmap(m)
	if err != nil {
		t.Fatal(err)
	}
	mapped := make([]bool, len(got))
	for _, r := range bm.Ranges {
		off, n := r.Bytes(bm.BlockSize, bm.ImageSize)
		if !bytes.Equal(got[off:off+n], want[off:off+n]) {
			t.Fatalf("device bytes %d-%d differ from the image", off, off+n-1)
		}
		for i := off; i < off+n; i++ {
			mapped[i] = true
		}
	}
	for i := range got {
		if !mapped[i] && got[i] != 0xa5 {
			t.Fatalf("byte %d outside the mapped ranges was written", i)
		}
	}

	_, err = Flash(context.Background(), zst, loop, WithForce(), WithBeforeVerify(func(dev string) error {
		return flipByte(dev, 5*mib+mib-1)
	}))
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("flip on the device: err = %v", err)
	}

	if out, err := exec.Command(mkfs, "-q", "-F", loop).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", loop, mnt).CombinedOutput(); err != nil {
		testtool.Missing(t, "mount: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	for _, opts := range [][]Option{nil, {WithForce()}} {
		if _, err := Flash(context.Background(), zst, loop, opts...); !errors.Is(err, ErrMounted) {
			t.Fatalf("mounted device (%d options): err = %v", len(opts), err)
		}
	}
}

// TestFlashSeekableSkipsHoles flashes a zstd image hostos wrote (seekable: independent frames and a seek
// table) with its block map: the frames holding no mapped block are never read, so damage there does not
// matter, while damage in a frame holding mapped blocks is caught.
func TestFlashSeekableSkipsHoles(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	want := makeImage(t, raw, 9*mib+500)
	zst := filepath.Join(dir, "disk.img.zst")
	compressTo(t, raw, zst, "zst")
	writeBmap(t, raw, filepath.Join(dir, "disk.img.bmap"))
	zb, err := os.ReadFile(zst)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := disk.ZstdSeekTable(bytes.NewReader(zb), int64(len(zb)))
	if err != nil || len(frames) != 10 {
		t.Fatalf("seek table: %d frames, %v; want 10 frames of 1 MiB", len(frames), err)
	}
	damage := func(frame int) string {
		b := append([]byte(nil), zb...)
		f := frames[frame]
		for i := f.Off + f.Len/2; i < f.Off+f.Len-4; i++ {
			b[i] ^= 0x5a
		}
		p := filepath.Join(t.TempDir(), "disk.img.zst")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(strings.TrimSuffix(p, ".zst")+".bmap", mustRead(t, filepath.Join(dir, "disk.img.bmap")), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Frame 3 (bytes 3-4 MiB) lies in a hole; frame 5 holds mapped blocks.
	out := filepath.Join(dir, "out.img")
	res, err := Flash(context.Background(), damage(3), out)
	if err != nil {
		t.Fatalf("a damaged frame in a hole: %v", err)
	}
	if got := mustRead(t, out); !bytes.Equal(got, want) || res.Map != "bmap" || !res.Verified {
		t.Fatalf("flashed file differs from the image, or result %+v", res)
	}
	if _, err := Flash(context.Background(), damage(5), filepath.Join(dir, "out2.img")); err == nil || !strings.Contains(err.Error(), "zstd frame 5") {
		t.Fatalf("a damaged frame holding mapped blocks: err %v, want one naming zstd frame 5", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
