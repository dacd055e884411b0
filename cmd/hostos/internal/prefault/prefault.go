// Package prefault shortens hostos's start on Linux by touching, on the second core, the memory the
// first is about to touch.
//
// A start of hostos is mostly page faults, not work: each package's init code lies on a page of its
// own of a 22 MB binary, and the heap grows a page at a time. In a virtual machine a fault costs tens
// of microseconds (about 20 µs on the 2-core machine the benchmarks run on, where a Go hello-world's
// whole start is 170 faults). Importing this package starts, during package initialisation, one
// goroutine that asks the kernel (madvise MADV_POPULATE_READ and MADV_POPULATE_WRITE, Linux 5.14)
// to map in one call the binary's code and read-only data already in the page cache, and the next
// 2 MiB of the heap. Neither changes any byte: populating a page maps what a fault would have mapped.
// Pages not in the page cache are left alone, so a cold start reads no more from disk than before.
// On other systems, or with HOSTOS_PREFAULT=0 in the environment, it does nothing.
//
// Measured with scripts/bench-configure.sh's pairs (hostos --version against the same binary with
// HOSTOS_PREFAULT=0): see the README's start-up figures.
package prefault
