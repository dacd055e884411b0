package tree

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkStageSource stages the archive named by HOSTOS_BENCH_SOURCE (skipped when unset), for profiling.
func BenchmarkStageSource(b *testing.B) {
	src := os.Getenv("HOSTOS_BENCH_SOURCE")
	if src == "" {
		b.Skip("HOSTOS_BENCH_SOURCE not set")
	}
	d := os.Getenv("HOSTOS_BENCH_DIR")
	if d == "" {
		d = b.TempDir()
	}
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(d, "stage")
		st, err := Stage(context.Background(), src, dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(st.Bytes)
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}
