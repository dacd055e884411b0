//go:build unix

package ext4

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hostos/hostos/rootfs/tree"
)

// BenchmarkMake stages a generated ~100 MB, 2500-file tar and builds a 320 MiB root filesystem from it.
func BenchmarkMake(b *testing.B) {
	requireTools(b, "mkfs.ext4", "debugfs")
	d := b.TempDir()
	src := filepath.Join(d, "rootfs.tar")
	rng := rand.New(rand.NewSource(1))
	es := []entry{dir("./", 0o755, 0, 0)}
	for i := 0; i < 50; i++ {
		es = append(es, dir(fmt.Sprintf("usr/lib/d%02d/", i), 0o755, 0, 0))
		for j := 0; j < 50; j++ {
			body := make([]byte, 20000+rng.Intn(40000))
			rng.Read(body)
			es = append(es, file(fmt.Sprintf("usr/lib/d%02d/f%02d", i, j), 0o644, 0, 0, string(body)))
		}
	}
	writeTar(b, src, "", es)
	const size = 320 << 20
	ctx := context.Background()
	var stageTime, makeTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		img := filepath.Join(d, "disk.img")
		f, err := os.Create(img)
		if err != nil {
			b.Fatal(err)
		}
		f.Truncate(partOff + size)
		f.Close()
		stage := filepath.Join(d, fmt.Sprintf("stage%d", i))
		b.StartTimer()
		t0 := time.Now()
		st, err := tree.Stage(ctx, src, stage, nil)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		b.SetBytes(st.Bytes)
		if err := Make(ctx, img, partOff, size, Options{InodeRatio: 8192, Time: mtime}, st); err != nil {
			b.Fatal(err)
		}
		stageTime += t1.Sub(t0)
		makeTime += time.Since(t1)
		b.StopTimer()
		os.RemoveAll(stage)
		b.StartTimer()
	}
	b.ReportMetric(stageTime.Seconds()/float64(b.N), "stage-s/op")
	b.ReportMetric(makeTime.Seconds()/float64(b.N), "make-s/op")
}
