package ext4

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostos/hostos/tests/testtool"
)

// TestSetLabel relabels filesystems made by mkfs.ext4 with and without metadata_csum: e2fsck finds
// nothing to fix and blkid reads the new label.
func TestSetLabel(t *testing.T) {
	testtool.Need(t, "mkfs.ext4")
	for _, features := range []string{"metadata_csum", "^metadata_csum"} {
		t.Run(features, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "fs.img")
			if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "old", "-O", features, img, "8M").CombinedOutput(); err != nil {
				t.Fatalf("mkfs.ext4: %v\n%s", err, out)
			}
			b, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if err := SetLabel(b[:SuperblockEnd], "resin-rootB"); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(img, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(testtool.Need(t, "e2fsck"), "-fn", img).CombinedOutput(); err != nil {
				t.Fatalf("e2fsck -fn: %v\n%s", err, out)
			}
			out, err := exec.Command(testtool.Need(t, "blkid"), "-p", "-o", "value", "-s", "LABEL", img).Output()
			if err != nil || strings.TrimSpace(string(out)) != "resin-rootB" {
				t.Fatalf("blkid label %q: %v", out, err)
			}
		})
	}
	if err := SetLabel(make([]byte, SuperblockEnd), "x"); err == nil {
		t.Error("zeros accepted as a superblock")
	}
	if err := SetLabel(make([]byte, 100), "x"); err == nil {
		t.Error("short buffer accepted")
	}
}
