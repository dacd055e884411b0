package tree

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cpuNow is the CPU time, user and system, of this process and of its children waited for.
func cpuNow() (self, kids time.Duration) {
	var s, c syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &s)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &c)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(s.Utime) + tv(s.Stime), tv(c.Utime) + tv(c.Stime)
}

// BenchmarkStageSource stages the archive named by HOSTOS_BENCH_SOURCE (skipped when unset), for
// profiling, into HOSTOS_BENCH_DIR (a tmpfs, say) or a temporary directory. Besides the time it reports
// the CPU time each staging takes in this process (self-s/op) and in the decompressing program
// (kids-s/op): on a busy machine these tell two ways of staging apart where the wall time drifts.
func BenchmarkStageSource(b *testing.B) {
	src := os.Getenv("HOSTOS_BENCH_SOURCE")
	if src == "" {
		b.Skip("HOSTOS_BENCH_SOURCE not set")
	}
	d := os.Getenv("HOSTOS_BENCH_DIR")
	if d == "" {
		d = b.TempDir()
	}
	var self, kids time.Duration
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(d, "stage")
		s0, k0 := cpuNow()
		st, err := Stage(context.Background(), src, dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		s1, k1 := cpuNow()
		self += s1 - s0
		kids += k1 - k0
		b.SetBytes(st.Bytes)
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(self.Seconds()/float64(b.N), "self-s/op")
	b.ReportMetric(kids.Seconds()/float64(b.N), "kids-s/op")
}
