package bundle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostos/hostos/hostapp/delta"
	"github.com/hostos/hostos/rootfs/ext4"
)

// fakeDeltaImage is size pseudo-random bytes with an ext4 superblock magic: enough for Create and Unlabelled,
// which do not read the filesystem.
func fakeDeltaImage(size int, seed uint64) []byte {
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	clear(b[1024:2048])
	b[1024+56], b[1024+57] = 0x53, 0xef
	return b
}

// deltaBundleBytes is a small delta bundle, a seed for the fuzz targets.
func deltaBundleBytes(tb testing.TB) []byte {
	dir := tb.TempDir()
	base := fakeDeltaImage(256<<10, 3)
	target := bytes.Clone(base)
	copy(target[128<<10:], fakeDeltaImage(40<<10, 4)[4096:])
	img := filepath.Join(dir, "v2.ext4")
	if err := os.WriteFile(img, target, 0o644); err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := Create(context.Background(), CreateOptions{DeviceType: "raspberrypi4-64", Arch: "aarch64", Version: "2",
		Image: img, TempDir: dir, Base: &DeltaBase{Image: bytes.NewReader(base), Size: int64(len(base)), Version: "1"}}, &out); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

// TestDeltaBundle: a delta bundle is format 2 and carries the base it needs; its member, checked by
// CheckDelta, applied to the base as a slot holds it (labelled) gives the new image; old and new format
// names are refused where they do not belong.
func TestDeltaBundle(t *testing.T) {
	dir := t.TempDir()
	base := fakeDeltaImage(4<<20, 1)
	target := bytes.Clone(base)
	copy(target[2<<20:], fakeDeltaImage(100<<10, 2)[4096:])
	img := filepath.Join(dir, "v2.ext4")
	if err := os.WriteFile(img, target, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	m, err := Create(context.Background(), CreateOptions{DeviceType: "raspberrypi4-64", Arch: "aarch64", Version: "2",
		Created: 1700000000, Image: img, TempDir: dir,
		Base: &DeltaBase{Image: bytes.NewReader(base), Size: int64(len(base)), Version: "1"}}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != DeltaFormatVersion || m.Delta == nil || m.Delta.BaseVersion != "1" || m.Rootfs.Compression != CompressionDelta {
		t.Fatalf("metadata %+v", m)
	}
	if out.Len() > 300<<10 {
		t.Errorf("delta bundle of a 100 KiB change: %d bytes", out.Len())
	}
	r, err := NewReader(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	rr, err := r.Rootfs()
	if err != nil {
		t.Fatal(err)
	}
	member, err := io.ReadAll(rr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckDelta(r.Metadata(), bytes.NewReader(member), int64(len(member))); err != nil {
		t.Fatal(err)
	}
	// The base as a slot holds it: labelled.
	slot := bytes.Clone(base)
	if err := ext4.SetLabel(slot, "resin-rootB"); err != nil {
		t.Fatal(err)
	}
	ub, err := Unlabelled(bytes.NewReader(slot))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := delta.Apply(context.Background(), ub, int64(len(slot)), bytes.NewReader(member), int64(len(member)), &got, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), target) {
		t.Fatal("the applied delta differs from the new image")
	}
	// Metadata that names another base than the member's is corruption.
	bad := r.Metadata()
	bad.Delta.BaseSize++
	if _, err := CheckDelta(bad, bytes.NewReader(member), int64(len(member))); !errors.Is(err, ErrCorrupt) {
		t.Errorf("CheckDelta with another base: %v", err)
	}
	// A full bundle cannot say "delta", nor a delta bundle be format 1.
	meta, _ := r.meta.encode()
	for _, tc := range []struct{ name, from, to string }{
		{"format 1 delta", `"format":2`, `"format":1`},
		{"delta compression on a full bundle", `"compression":"delta"`, `"compression":"zstd"`},
	} {
		if _, err := decodeMetadata([]byte(strings.Replace(string(meta), tc.from, tc.to, 1))); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, err := decodeMetadata(meta); err != nil {
		t.Errorf("delta metadata: %v", err)
	}
}
