package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"math/bits"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/hostos/hostos/tests/testtool"
)

var timeZero = time.Unix(1700000000, 0)

var update = flag.Bool("update", false, "rewrite golden files")

func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func split(t *testing.T, data []byte) []Chunk {
	t.Helper()
	var cs []Chunk
	if err := Split(bytes.NewReader(data), DefaultParams, func(c Chunk, d []byte) error {
		if sha256.Sum256(d) != c.Sum || int64(len(d)) != c.Len {
			t.Fatalf("chunk %+v: data does not match", c)
		}
		cs = append(cs, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestSplit: chunks tile the input within the size bounds, average near 64 KiB, and an insertion changes
// only the chunks around it (content-defined boundaries).
func TestSplit(t *testing.T) {
	data := randomBytes(8<<20, 1)
	cs := split(t, data)
	var off int64
	for i, c := range cs {
		if c.Off != off || c.Len > int64(DefaultParams.Max) || (i < len(cs)-1 && c.Len < int64(DefaultParams.Min)) {
			t.Fatalf("chunk %d %+v out of bounds", i, c)
		}
		off += c.Len
	}
	if off != int64(len(data)) {
		t.Fatalf("chunks cover %d of %d bytes", off, len(data))
	}
	if avg := off / int64(len(cs)); avg < 40<<10 || avg > 100<<10 {
		t.Fatalf("average chunk %d bytes, want about 64 KiB", avg)
	}
	shifted := append(append(append([]byte{}, data[:3<<20]...), randomBytes(100, 9)...), data[3<<20:]...)
	have := map[[32]byte]bool{}
	for _, c := range cs {
		have[c.Sum] = true
	}
	changed := 0
	for _, c := range split(t, shifted) {
		if !have[c.Sum] {
			changed++
		}
	}
	if changed > 3 {
		t.Fatalf("a 100-byte insertion changed %d chunks", changed)
	}
}

// TestIndexGolden pins the index encoding and round-trips it.
func TestIndexGolden(t *testing.T) {
	data := randomBytes(1<<20, 3)
	idx := Index{Params: DefaultParams, Size: int64(len(data)), Chunks: split(t, data)}
	b, _ := idx.MarshalBinary()
	golden := filepath.Join("testdata", "index.golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(golden, b, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatal("index encoding or chunk boundaries changed (go test -update to accept)")
	}
	var back Index
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := back.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Fatal("round trip differs")
	}
}

func FuzzIndex(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "index.golden")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var x Index
		if x.UnmarshalBinary(b) != nil {
			return
		}
		out, _ := x.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatal("accepted index does not re-encode to itself")
		}
	})
}

func FuzzHeader(f *testing.F) {
	f.Add([]byte("HOSTOSDL\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ReadHeader(bytes.NewReader(b), int64(len(b)))
	})
}

// mkfs builds a deterministic ext4 image of dir (fixed UUID, hash seed and times).
func mkfs(t *testing.T, mkfsPath, dir, img string) {
	t.Helper()
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mkfsPath, "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "resin-rootA",
		"-U", "4f3b2a10-0000-4000-8000-000000000001", "-E", "hash_seed=4f3b2a10-0000-4000-8000-000000000002,root_owner=0:0",
		"-d", dir, img, "96M")
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1700000000", "SOURCE_DATE_EPOCH=1700000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
}

// TestDeltaExt4 changes one file of a root filesystem between two deterministic builds: the delta is at most
// 2 % of the compressed full image, applying it gives the new image byte for byte (e2fsck clean), and a
// wrong base, a corrupted, a missing chunk and a truncated delta each fail in one line before writing.
func TestDeltaExt4(t *testing.T) {
	mkfsPath := testtool.Need(t, "mkfs.ext4")
	e2fsck := testtool.Need(t, "e2fsck")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for i := range 24 {
		p := filepath.Join(tree, "usr", "lib", "f"+string(rune('a'+i)))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, randomBytes(1<<20, uint64(i)), 0o644)
	}
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "os-release"), []byte("VERSION_ID=1.0\n"), 0o644)
	for _, p := range []string{tree, filepath.Join(tree, "usr"), filepath.Join(tree, "usr", "lib"), filepath.Join(tree, "etc")} {
		os.Chtimes(p, timeZero, timeZero)
	}
	v1 := filepath.Join(dir, "v1.img")
	mkfs(t, mkfsPath, tree, v1)
	// Version 2: one 64 KiB change inside one file, and os-release.
	f, _ := os.OpenFile(filepath.Join(tree, "usr", "lib", "fk"), os.O_RDWR, 0)
	f.WriteAt(randomBytes(64<<10, 99), 300<<10)
	f.Close()
	os.WriteFile(filepath.Join(tree, "etc", "os-release"), []byte("VERSION_ID=2.0\n"), 0o644)
	v2 := filepath.Join(dir, "v2.img")
	mkfs(t, mkfsPath, tree, v2)

	b1, _ := os.ReadFile(v1)
	b2, _ := os.ReadFile(v2)
	var d bytes.Buffer
	st, err := Create(context.Background(), bytes.NewReader(b1), int64(len(b1)), "1.0", bytes.NewReader(b2), int64(len(b2)), DefaultParams, &d)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	full := len(enc.EncodeAll(b2, nil))
	t.Logf("delta %d bytes (%d of %d chunks new) vs full zstd image %d bytes: %.2f %%", st.DeltaBytes, st.NewChunks, st.Chunks, full, 100*float64(st.DeltaBytes)/float64(full))
	if st.DeltaBytes > int64(full)/50 {
		t.Fatalf("delta %d bytes > 2 %% of the full image's %d", st.DeltaBytes, full)
	}
	var out bytes.Buffer
	if _, err := Apply(context.Background(), bytes.NewReader(b1), int64(len(b1)), bytes.NewReader(d.Bytes()), int64(d.Len()), &out, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), b2) {
		t.Fatal("applied delta differs from version 2")
	}
	res := filepath.Join(dir, "result.img")
	os.WriteFile(res, out.Bytes(), 0o644)
	if o, err := exec.Command(e2fsck, "-fn", res).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v: %s", err, o)
	}

	h, payload, err := ReadHeader(bytes.NewReader(d.Bytes()), int64(d.Len()))
	if err != nil {
		t.Fatal(err)
	}
	// A delta whose payload lacks its last new chunk, well formed otherwise.
	var newData [][]byte
	have := map[[32]byte]bool{}
	for _, c := range split(t, b1) {
		have[c.Sum] = true
	}
	for _, c := range h.Index.Chunks {
		if !have[c.Sum] {
			newData = append(newData, b2[c.Off:c.Off+c.Len])
		}
	}
	missing := append([]byte{}, d.Bytes()[:payload]...)
	missing = enc.EncodeAll(bytes.Join(newData[:len(newData)-1], nil), missing)
	corrupt := bytes.Clone(d.Bytes())
	corrupt[payload+int64(len(corrupt)-int(payload))/2] ^= 1

	for _, tc := range []struct {
		name  string
		base  []byte
		delta []byte
		want  error
		words string
	}{
		{"wrong base", b2, d.Bytes(), ErrWrongBase, "needs version 1.0"},
		{"corrupted chunk", b1, corrupt, ErrCorrupt, "chunk"},
		{"missing chunk", b1, missing, ErrCorrupt, "is missing"},
		{"truncated", b1, d.Bytes()[:d.Len()-100], ErrCorrupt, "chunk"},
		{"truncated header", b1, d.Bytes()[:payload-5], ErrCorrupt, "truncated"},
		{"not a delta", b1, b2[:4096], ErrCorrupt, "not a hostos delta"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w bytes.Buffer
			_, err := Apply(context.Background(), bytes.NewReader(tc.base), int64(len(tc.base)), bytes.NewReader(tc.delta), int64(len(tc.delta)), &w, nil)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.words) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line with %q", err, tc.words)
			}
			if w.Len() != 0 {
				t.Fatalf("%d bytes written before the error", w.Len())
			}
		})
	}

	// casync as a judge: its chunker (same 16:64:256 KiB sizes, its own buzhash table) on the same two
	// images should find a similar number of chunks and of new chunks.
	casync, err := exec.LookPath("casync")
	if err != nil {
		testtool.Missing(t, "casync not installed: %v", err)
	}
	store := filepath.Join(dir, "store")
	count := func() int {
		n := 0
		filepath.WalkDir(store, func(_ string, e os.DirEntry, _ error) error {
			if e != nil && !e.IsDir() && strings.HasSuffix(e.Name(), ".cacnk") {
				n++
			}
			return nil
		})
		return n
	}
	casyncMake := func(img string) {
		o, err := exec.Command(casync, "make", "--digest=sha256", "--chunk-size=16384:65536:262144", "--store="+store, img+".caibx", img).CombinedOutput()
		if err != nil {
			t.Fatalf("casync make: %v: %s", err, o)
		}
	}
	casyncMake(v1)
	n1 := count()
	casyncMake(v2)
	casyncNew := count() - n1
	ours := map[[32]byte]bool{}
	for _, c := range split(t, b1) {
		ours[c.Sum] = true
	}
	t.Logf("unique chunks of v1: casync %d, hostos %d; new in v2: casync %d, hostos %d", n1, len(ours), casyncNew, st.NewChunks)
	if len(ours) > 2*n1+2 || n1 > 2*len(ours)+2 {
		t.Fatalf("chunk counts differ too much: casync %d, hostos %d", n1, len(ours))
	}
	if st.NewChunks > 2*casyncNew+4 {
		t.Fatalf("hostos needs %d new chunks where casync needs %d", st.NewChunks, casyncNew)
	}
}

// TestFastMod: the chunker's multiply-shift remainder equals h % d for the divisors of its parameters
// and values across the range.
func TestFastMod(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, d := range []uint32{DefaultParams.Avg - DefaultParams.Min, 1, 3, 4096, 49152, 1<<31 - 1, 1 << 31} {
		m := ^uint64(0)/uint64(d) + 1
		for i := 0; i < 100000; i++ {
			h := rng.Uint32()
			if i < 3 {
				h = []uint32{0, ^uint32(0), d - 1}[i]
			}
			hi, _ := bits.Mul64(m*uint64(h), uint64(d))
			if uint32(hi) != h%d {
				t.Fatalf("d %d h %d: %d, want %d", d, h, hi, h%d)
			}
		}
	}
}

// TestPrepareProbe: a change in place is applied from one read of the base, every chunk found at its own
// offset or in the delta; a base whose chunks moved is split as the delta's maker split it; a base that
// differs where the new image reads it is the wrong base; each result is the target, byte for byte.
func TestPrepareProbe(t *testing.T) {
	base := randomBytes(4<<20, 11)
	inPlace := bytes.Clone(base)
	copy(inPlace[2<<20:], randomBytes(64<<10, 12))
	// Changes in place of several sizes: some cut a chunk of the base in two, the delta then carrying a
	// chunk whose bytes are also in the base at its offset.
	// (With this base and these changes, two such chunks.)
	manyBase := randomBytes(4<<20, 2)
	many := bytes.Clone(manyBase)
	for i, n := range []int{1, 100, 4096, 20000, 70000, 150000, 300000} {
		copy(many[i*(500<<10)+7:], randomBytes(n, uint64(220+i)))
	}
	shifted := append(randomBytes(1000, 13), base...)
	otherBase := bytes.Clone(base)
	copy(otherBase[1<<20:], randomBytes(4096, 14)) // where inPlace takes its bytes from the base

	for _, c := range []struct {
		name         string
		target, base []byte
		made         []byte // the base the delta is made from
		probed       bool
		wrongBase    bool
	}{
		{"in place", inPlace, base, base, true, false},
		{"in place, many", many, manyBase, manyBase, true, false},
		{"shifted", shifted, base, base, false, false},
		{"wrong base", inPlace, otherBase, base, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var d bytes.Buffer
			if _, err := Create(context.Background(), bytes.NewReader(c.made), int64(len(c.made)), "1", bytes.NewReader(c.target), int64(len(c.target)), DefaultParams, &d); err != nil {
				t.Fatal(err)
			}
			pl, err := Prepare(context.Background(), bytes.NewReader(c.base), int64(len(c.base)), bytes.NewReader(d.Bytes()), int64(d.Len()))
			if c.wrongBase {
				if !errors.Is(err, ErrWrongBase) {
					t.Fatalf("Prepare: %v, want ErrWrongBase", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pl.probed != c.probed {
				t.Errorf("probed = %v, want %v", pl.probed, c.probed)
			}
			if n := pl.NewBytes(); n > 2<<20 {
				t.Errorf("%d bytes from the delta for a small change", n)
			}
			var out bytes.Buffer
			if err := pl.WriteTo(context.Background(), &out, nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), c.target) {
				t.Fatal("the image written differs from the target")
			}
		})
	}
}

// TestBaseChangedWhileApplying: a base chunk that changed between Prepare and WriteTo is ErrWrongBase,
// unless NoRecheck leaves that to the caller's digest of what was written, which then differs.
func TestBaseChangedWhileApplying(t *testing.T) {
	base := randomBytes(2<<20, 31)
	target := bytes.Clone(base)
	copy(target[1<<20:], randomBytes(4096, 32))
	var d bytes.Buffer
	if _, err := Create(context.Background(), bytes.NewReader(base), int64(len(base)), "1", bytes.NewReader(target), int64(len(target)), DefaultParams, &d); err != nil {
		t.Fatal(err)
	}
	for _, noRecheck := range []bool{false, true} {
		b := bytes.Clone(base)
		pl, err := Prepare(context.Background(), bytes.NewReader(b), int64(len(b)), bytes.NewReader(d.Bytes()), int64(d.Len()))
		if err != nil {
			t.Fatal(err)
		}
		b[100] ^= 1 // the base changes after the check
		pl.NoRecheck = noRecheck
		var out bytes.Buffer
		err = pl.WriteTo(context.Background(), &out, nil)
		switch {
		case !noRecheck && !errors.Is(err, ErrWrongBase):
			t.Errorf("WriteTo: %v, want ErrWrongBase", err)
		case noRecheck && (err != nil || sha256.Sum256(out.Bytes()) == sha256.Sum256(target)):
			t.Errorf("NoRecheck: err %v, and the image's digest must differ from the target's", err)
		}
	}
}
