package config

import (
	"os"
	"path/filepath"
	"testing"
)

// referenceFile locates a file of the shared reference directory, which lives beside the repository
// (../shared/reference from the repository root); missing skips locally and fails under CI.
func referenceFile(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", "shared", "reference", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("reference file %s not found beside the repository", name)
	}
	t.Skipf("reference file %s not found", name)
	return ""
}
