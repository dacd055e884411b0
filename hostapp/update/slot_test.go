package update

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/probe"
	"github.com/hostos/hostos/tests/testtool"
)

// TestWriteSlotDigests writes a real ext4 image into a slot with each kind of expected digest: right
// ones give a labelled, fsck-clean filesystem; a wrong one is refused with ErrCorrupt before the head is
// written, so the slot holds no filesystem at all.
func TestWriteSlotDigests(t *testing.T) {
	testtool.Need(t, "mkfs.ext4")
	dir := t.TempDir()
	fsImg := filepath.Join(dir, "fs.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", ".", fsImg, "6M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	image, err := os.ReadFile(fsImg)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(image)
	cd := bundle.NewChunkDigest(1 << 20)
	cd.Write(image)
	chunked := cd.Sum()
	wrong := strings.Repeat("0", 64)
	slot := partition.Partition{Number: 3, Start: 1 << 20, Size: 8 << 20}
	for _, c := range []struct {
		name string
		want Digest
		ok   bool
	}{
		{"chunked", Digest{SHA256: wrong, ChunkSize: 1 << 20, ChunksSHA256: chunked}, true},
		{"sha256", Digest{SHA256: hex.EncodeToString(sum[:])}, true},
		{"none (crc read-back)", Digest{}, true},
		{"wrong chunked", Digest{SHA256: hex.EncodeToString(sum[:]), ChunkSize: 1 << 20, ChunksSHA256: wrong}, false},
		{"wrong sha256", Digest{SHA256: wrong}, false},
	} {
		for _, chunk := range []int{300 << 10, 1 << 20, 4 << 20} {
			t.Run(c.name, func(t *testing.T) {
				img := filepath.Join(t.TempDir(), "disk.img")
				d, err := disk.Create(img, 10<<20)
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()
				err = writeSlot(context.Background(), d, slot, bytes.NewReader(image), int64(len(image)), c.want, "resin-rootB", chunk, nil)
				if !c.ok {
					if !errors.Is(err, bundle.ErrCorrupt) {
						t.Fatalf("chunk %d: err %v, want ErrCorrupt", chunk, err)
					}
					if _, err := ext4.FilesystemSize(d, slot.Start); err == nil {
						t.Fatalf("chunk %d: a refused image left a filesystem in the slot", chunk)
					}
					return
				}
				if err != nil {
					t.Fatalf("chunk %d: %v", chunk, err)
				}
				if err := ext4.Check(context.Background(), img, slot.Start); err != nil {
					t.Fatal(err)
				}
				if _, label, _ := probe.Filesystem(d, slot.Start, slot.Size); label != "resin-rootB" {
					t.Errorf("label %q", label)
				}
			})
		}
	}
	// A payload shorter or longer than it says is refused too.
	img := filepath.Join(dir, "disk.img")
	d, err := disk.Create(img, 10<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := writeSlot(context.Background(), d, slot, bytes.NewReader(image[:len(image)-1]), int64(len(image)), Digest{}, "x", 0, nil); err == nil {
		t.Error("short payload accepted")
	}
	if err := writeSlot(context.Background(), d, slot, bytes.NewReader(append(image, 0)), int64(len(image)), Digest{}, "x", 0, nil); err == nil {
		t.Error("long payload accepted")
	}
	if err := writeSlot(context.Background(), d, partition.Partition{Start: 1 << 20, Size: 4 << 20}, bytes.NewReader(image), int64(len(image)), Digest{}, "x", 0, nil); !errors.Is(err, ErrNoSpace) {
		t.Errorf("too large: %v", err)
	}
}
