package fat

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"
)

// guarded is a Device holding a file system between two guard areas: a write that reaches outside the
// file system's bytes fails the test.
type guarded struct {
	t      *testing.T
	b      []byte
	lo, hi int64 // the file system's byte range
}

const guardSize, guardByte = 4096, 0xa5

func newGuarded(t *testing.T, img []byte) *guarded {
	b := bytes.Repeat([]byte{guardByte}, guardSize+len(img)+guardSize)
	copy(b[guardSize:], img)
	return &guarded{t: t, b: b, lo: guardSize, hi: int64(guardSize + len(img))}
}

func (g *guarded) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(g.b)) {
		return 0, io.EOF
	}
	n := copy(p, g.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (g *guarded) WriteAt(p []byte, off int64) (int, error) {
	if off < g.lo || off+int64(len(p)) > g.hi {
		g.t.Errorf("write of %d bytes at %d outside the file system's bytes [%d, %d)", len(p), off, g.lo, g.hi)
		return 0, fmt.Errorf("write outside the file system")
	}
	return copy(g.b[off:], p), nil
}

func (g *guarded) Sync() error { return nil }

func (g *guarded) checkGuards() {
	for i, c := range g.b {
		if (int64(i) < g.lo || int64(i) >= g.hi) && c != guardByte {
			g.t.Fatalf("guard byte %d changed", i)
		}
	}
}

// mutate applies patch to a copy of img: 4-byte records, a 3-byte little-endian offset (modulo the size)
// and the byte to put there, at most 256 of them.
func mutate(img, patch []byte) []byte {
	b := bytes.Clone(img)
	for i := 0; i+4 <= len(patch) && i < 4*256; i += 4 {
		off := int(patch[i]) | int(patch[i+1])<<8 | int(patch[i+2])<<16
		b[off%len(b)] = patch[i+3]
	}
	return b
}

// FuzzWriter opens mutated small file systems (the handmade FAT12 and, where the tools exist, mkfs.vfat's
// FAT12 and FAT32) for writing and replaces, creates and removes files; it checks and repairs a second
// copy. None of it may panic, loop, or write outside the file system's bytes; a write the writer accepted
// must read back.
func FuzzWriter(f *testing.F) {
	seeds := fuzzSeeds(f)
	for i := range seeds {
		f.Add(uint8(i), []byte{})
	}
	f.Fuzz(func(t *testing.T, which uint8, patch []byte) {
		fuzzWriterOnce(t, mutate(seeds[int(which)%len(seeds)], patch))
	})
}

func fuzzWriterOnce(t *testing.T, img []byte) {
	{
		size := int64(len(img))
		stamp := time.Date(2024, 1, 2, 3, 4, 6, 0, time.UTC)

		g := newGuarded(t, img)
		if fsys, err := Open(g, g.lo, size); err == nil {
			if _, err := fsys.Check(); err != nil {
				t.Fatalf("Check on an in-memory device: %v", err)
			}
		}
		w, err := OpenRW(g, g.lo, size)
		if err == nil {
			data := bytes.Repeat([]byte("new content "), 100)
			for _, op := range []func() error{
				func() error { return w.WriteFile("/Hello World.txt", data, stamp) },
				func() error { return w.WriteFile("/config.json", []byte(`{"a":1}`), stamp) },
				func() error { return w.MkdirAll("/system-connections/sub", stamp) },
				func() error { return w.WriteFile("/system-connections/resin-wifi-01", data[:300], stamp) },
				func() error { return w.WriteFile("/Sub Dir/A long file name.txt", nil, stamp) },
				func() error { return w.Remove("/config.json") },
				func() error { return w.Remove("/Hello World.txt") },
			} {
				_ = op()
			}
			if err := w.WriteFile("/check.bin", data, stamp); err == nil {
				if got, err := w.ReadFile("/check.bin"); err != nil || !bytes.Equal(got, data) {
					t.Errorf("/check.bin written, reads back %d bytes, %v", len(got), err)
				}
			}
		}
		g.checkGuards()

		r := newGuarded(t, img)
		if _, after, err := Repair(r, r.lo, size); err == nil {
			// What Repair leaves, the writer must open or refuse cleanly, and Check must agree with itself.
			if _, err := OpenRW(r, r.lo, size); err == nil {
				for _, fd := range after.Findings {
					if fd.Kind.unsafe() {
						t.Errorf("OpenRW accepted what Check calls %s", fd.Message)
					}
				}
			}
		}
		r.checkGuards()
	}
}
