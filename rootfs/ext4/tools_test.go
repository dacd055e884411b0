package ext4

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestToolMissing: without e2fsprogs on PATH, Check fails with ErrToolMissing naming the program and
// saying how to get it, and leaves the image as it was.
func TestToolMissing(t *testing.T) {
	img := filepath.Join(t.TempDir(), "x.img")
	if err := os.WriteFile(img, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	err := Check(context.Background(), img, 0)
	if !errors.Is(err, ErrToolMissing) || !strings.Contains(err.Error(), "e2fsck") || !strings.Contains(err.Error(), "e2fsprogs") {
		t.Fatalf("Check without e2fsck: %v", err)
	}
	if b, _ := os.ReadFile(img); len(b) != 4096 {
		t.Errorf("image changed: %d bytes", len(b))
	}
}
