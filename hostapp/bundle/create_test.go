package bundle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hostos/hostos/tests/testtool"
	"github.com/klauspost/compress/zstd"
)

// fakeExt4 writes a sparse file of size bytes with an ext4 superblock magic and some data.
func fakeExt4(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0x53, 0xef}, 1080); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(testImage(200<<10, 3), size/2); err != nil {
		t.Fatal(err)
	}
}

func writeBootDir(t testing.TB, dir string) {
	t.Helper()
	for name, body := range testBootFiles() {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCreate(t *testing.T) {
	pub, priv := testKey(t, 1)
	dir := t.TempDir()
	img := filepath.Join(dir, "rootfs.ext4")
	fakeExt4(t, img, 8<<20)
	boot := filepath.Join(dir, "boot")
	writeBootDir(t, boot)

	o := CreateOptions{DeviceType: "raspberrypi4-64", Arch: "aarch64", Version: "6.0.13", Created: testCreated,
		Image: img, BootDir: boot, Key: priv, TempDir: t.TempDir()}
	var calls int
	var last, lastTotal int64
	o.Progress = func(done, total int64) {
		if done < last {
			t.Errorf("progress went back from %d to %d", last, done)
		}
		calls++
		last, lastTotal = done, total
	}
	var a bytes.Buffer
	m, err := Create(context.Background(), o, &a)
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 || last != lastTotal || lastTotal != m.Rootfs.ImageSize+m.Rootfs.Size+m.Boot.Size {
		t.Errorf("progress: %d calls, last %d of %d", calls, last, lastTotal)
	}
	if m.Rootfs.ImageSHA256 != testtool.SHA256(t, img) || m.Rootfs.ImageSize != 8<<20 {
		t.Errorf("metadata rootfs %+v does not describe the image", m.Rootfs)
	}
	res, err := readAll(a.Bytes(), WithKeys(pub))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(res.files, testBootFiles()) {
		t.Errorf("boot files %v", res.files)
	}
	if entries, _ := os.ReadDir(o.TempDir); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}

	// Same inputs, another temporary directory, no progress: the same bytes.
	o.TempDir, o.Progress = t.TempDir(), nil
	var b bytes.Buffer
	if _, err := Create(context.Background(), o, &b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("same inputs, different bundles")
	}

	// Without boot files.
	o.BootDir = ""
	b.Reset()
	if m, err := Create(context.Background(), o, &b); err != nil || m.Boot != nil {
		t.Fatalf("no boot dir: %v, boot %v", err, m.Boot)
	}
	if names := memberSpans(t, b.Bytes()); len(names) != 3 {
		t.Errorf("members %v", names)
	}
}

func TestCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "rootfs.ext4")
	fakeExt4(t, img, 1<<20)
	notExt4 := filepath.Join(dir, "zeros")
	os.WriteFile(notExt4, make([]byte, 4096), 0o644)
	withLink := filepath.Join(dir, "boot")
	writeBootDir(t, withLink)
	os.Symlink("config.json", filepath.Join(withLink, "link"))
	good := CreateOptions{DeviceType: "x", Arch: "amd64", Version: "1", Image: img, TempDir: dir}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		mod  func(o *CreateOptions)
	}{
		{"no device type", nil, func(o *CreateOptions) { o.DeviceType = "" }},
		{"no image", nil, func(o *CreateOptions) { o.Image = "" }},
		{"missing image", nil, func(o *CreateOptions) { o.Image = filepath.Join(dir, "nope") }},
		{"not ext4", nil, func(o *CreateOptions) { o.Image = notExt4 }},
		{"symlink in boot", nil, func(o *CreateOptions) { o.BootDir = withLink }},
		{"missing boot dir", nil, func(o *CreateOptions) { o.BootDir = filepath.Join(dir, "nope") }},
		{"negative time", nil, func(o *CreateOptions) { o.Created = -1 }},
		{"canceled", canceled, func(*CreateOptions) {}},
	} {
		o := good
		tc.mod(&o)
		ctx := tc.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		if _, err := Create(ctx, o, io.Discard); err == nil {
			t.Errorf("%s: no error", tc.name)
		} else if tc.ctx != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: err %v, want context.Canceled", tc.name, err)
		}
	}
}

// TestCreateRealExt4 bundles a filesystem mkfs.ext4 made and checks what comes out with e2fsck.
func TestCreateRealExt4(t *testing.T) {
	mkfs := testtool.Need(t, "mkfs.ext4")
	e2fsck := testtool.Need(t, "e2fsck")
	dir := t.TempDir()
	img := filepath.Join(dir, "rootfs.ext4")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 32<<20)
	cmd := exec.Command(mkfs, "-q", "-F", "-i", "8192", "-L", "resin-rootA", "-E", "hash_seed=11111111-2222-3333-4444-555555555555", "-U", "11111111-2222-3333-4444-555555555555", img)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1700000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	var b bytes.Buffer
	if _, err := Create(context.Background(), CreateOptions{DeviceType: "genericx86-64-ext", Arch: "amd64", Version: "6.0.13",
		Created: testCreated, Image: img, TempDir: dir}, &b); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&b)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := r.Rootfs()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.ext4")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rd); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if testtool.SHA256(t, out) != testtool.SHA256(t, img) {
		t.Fatal("image out differs from image in")
	}
	if o, err := exec.Command(e2fsck, "-fn", out).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, o)
	}
}

// TestEncoderDeterministic checks that the multi-threaded encoder gives the bytes of a single-threaded
// one, however the input is cut into writes.
func TestEncoderDeterministic(t *testing.T) {
	data := testImage(24<<20, 7)
	var want bytes.Buffer
	ref, err := zstd.NewWriter(&want, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(8<<20), zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	ref.Write(data)
	ref.Close()
	for _, chunk := range []int{4096, 1 << 20, 3<<20 + 17, len(data)} {
		var got bytes.Buffer
		zw, err := newEncoder(&got)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(data); off += chunk {
			if _, err := zw.Write(data[off:min(off+chunk, len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("writes of %d bytes: output differs from the single-threaded encoder's", chunk)
		}
	}
}
