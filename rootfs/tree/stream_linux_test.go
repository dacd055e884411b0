package tree

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/zstd"
)

// streamEntries are entries whose bodies land on every side of the stream's buffer and the pipe's: a
// body larger than both, small ones around it, one ending exactly at a megabyte of the stream, empty
// ones, and the metadata a root filesystem has (replaced entries, hard links, xattrs, owners, devices).
func streamEntries() []entry {
	rnd := rand.New(rand.NewSource(7))
	big := make([]byte, 3*streamBuf+12345)
	rnd.Read(big[:streamBuf]) // incompressible, then compressible
	for i := streamBuf; i < len(big); i++ {
		big[i] = byte(i / 4096)
	}
	ping := reg("bin/ping", "ping")
	ping.hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}
	owned := reg("home/u/f", strings.Repeat("mine ", 5000))
	owned.hdr.Uid, owned.hdr.Gid = 1000, 1000
	suid := reg("bin/su", "su")
	suid.hdr.Mode = 0o4755
	es := []entry{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "usr/", Mode: 0o755}},
		reg("usr/big", string(big)),
		reg("usr/empty", ""),
		ping, owned, suid,
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "usr/big-link", Linkname: "usr/big"}},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/sh", Linkname: "busybox"}},
		reg("replaced", strings.Repeat("first ", 10000)),
		reg("replaced", "second"),
	}
	// Small files up to where the stream reaches a megabyte boundary, then one ending on it.
	var off int64
	for _, e := range es {
		off += 512 + (int64(len(e.body))+511)/512*512
		if e.hdr.PAXRecords != nil {
			off += 1024 // its PAX header and records
		}
	}
	for i := 0; off%streamBuf < streamBuf-64<<10; i++ {
		body := strings.Repeat(string(rune('a'+i%26)), rnd.Intn(20000))
		es = append(es, reg("etc/f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26%26)), body))
		off += 512 + (int64(len(body))+511)/512*512
	}
	es = append(es, reg("etc/on-boundary", strings.Repeat("b", int(streamBuf-off%streamBuf-512))))
	return append(es, reg("z/last", "last"))
}

// stagedState is what a staged tree holds and the fixups it needs: each path's type, mode, size and body.
func stagedState(t *testing.T, st *Staged) (map[string]string, []Fixup) {
	t.Helper()
	got := map[string]string{}
	err := filepath.Walk(st.Dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(st.Dir, p)
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		got[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, st.Fixups
}

// sameStaged checks that st holds the paths want and needs the fixups wantFixups, those of a plain tar.
func sameStaged(t *testing.T, st *Staged, want map[string]string, wantFixups []Fixup) {
	t.Helper()
	got, fixups := stagedState(t, st)
	if !reflect.DeepEqual(got, want) {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %.60q, want %.60q", k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s staged, not in the tar", k)
			}
		}
		t.Fatalf("staged %d paths, want %d", len(got), len(want))
	}
	if !reflect.DeepEqual(fixups, wantFixups) {
		t.Errorf("fixups differ from the plain tar's:\n%v\n%v", fixups, wantFixups)
	}
}

// gzipZstd compresses raw with gzip and with zstd.
func gzipZstd(t *testing.T, raw []byte) ([]byte, []byte) {
	t.Helper()
	var gz, zs bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	enc, err := zstd.NewWriter(&zs)
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(raw)
	enc.Close()
	return gz.Bytes(), zs.Bytes()
}

// Staging a compressed tar, through a decompressing program's pipe or an in-process decoder, stages what
// staging the plain tar does, byte for byte and fixup for fixup; a truncated or damaged stream fails.
func TestStageCompressedStreams(t *testing.T) {
	d := t.TempDir()
	plain := filepath.Join(d, "r.tar")
	writeTar(t, plain, streamEntries())
	raw, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Stage(context.Background(), plain, filepath.Join(d, "plain"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want, wantFixups := stagedState(t, st)

	gz, zs := gzipZstd(t, raw)
	type stream struct {
		name, ext string
		data      []byte
		igzip     bool
	}
	streams := []stream{{"gzip-go", "gz", gz, false}, {"zstd", "zst", zs, false}}
	if _, err := exec.LookPath("igzip"); err == nil {
		streams = append(streams, stream{"gzip-igzip", "gz", gz, true})
	} else {
		t.Log("igzip is not installed: the pipe from it is not checked")
	}
	if _, err := exec.LookPath("xz"); err == nil {
		cmd := exec.Command("xz", "--stdout", "-0")
		cmd.Stdin = bytes.NewReader(raw)
		xzd, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, stream{"xz", "xz", xzd, false})
	}
	saved := haveIgzip
	t.Cleanup(func() { haveIgzip = saved })
	for _, s := range streams {
		t.Run(s.name, func(t *testing.T) {
			haveIgzip = func() bool { return s.igzip }
			dd := t.TempDir()
			src := filepath.Join(dd, "r.tar."+s.ext)
			os.WriteFile(src, s.data, 0o644)
			var done, total int64
			st, err := Stage(context.Background(), src, filepath.Join(dd, "stage"), func(d, t int64) { done, total = d, t })
			if err != nil {
				t.Fatal(err)
			}
			sameStaged(t, st, want, wantFixups)
			if done != int64(len(s.data)) || total != int64(len(s.data)) {
				t.Errorf("progress %d of %d, want %d of %d", done, total, len(s.data), len(s.data))
			}

			// Cut in the big body, in the small files after it, and just before the end.
			for _, cut := range []int{len(s.data) / 5, len(s.data) * 2 / 3, len(s.data) - 3} {
				bad := filepath.Join(dd, "cut.tar."+s.ext)
				os.WriteFile(bad, s.data[:cut], 0o644)
				stage := filepath.Join(dd, "cut")
				if _, err := Stage(context.Background(), bad, stage, nil); err == nil {
					t.Errorf("stream cut at %d of %d: staged, no error", cut, len(s.data))
				}
				os.RemoveAll(stage)
			}
			damaged := bytes.Clone(s.data)
			for i := 0; i < 64; i++ {
				damaged[len(damaged)/2+i] ^= 0x5a
			}
			bad := filepath.Join(dd, "damaged.tar."+s.ext)
			os.WriteFile(bad, damaged, 0o644)
			if _, err := Stage(context.Background(), bad, filepath.Join(dd, "damaged"), nil); err == nil {
				t.Error("damaged stream: staged, no error")
			}
		})
	}
}

// A streamReader whose source hands out the stream in pieces of any size writes each body whole, the
// tar reader reading the rest; a stream that ends early, in a body written or one skipped, is an error
// and never the clean end of the archive.
func TestStreamReaderPieces(t *testing.T) {
	d := t.TempDir()
	plain := filepath.Join(d, "r.tar")
	entries := streamEntries()
	writeTar(t, plain, entries)
	raw, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]func(io.Reader) io.Reader{
		"whole":  func(r io.Reader) io.Reader { return r },
		"half":   iotest.HalfReader,
		"odd":    func(r io.Reader) io.Reader { return &oddReader{r: r} },
		"eof":    iotest.DataErrReader,
		"stalls": func(r io.Reader) io.Reader { return &stallReader{r: r} },
	}
	for name, wrap := range sources {
		t.Run(name, func(t *testing.T) {
			f, err := os.CreateTemp(d, "body")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			p := newStreamReader(wrap(bytes.NewReader(raw)))
			tr := tar.NewReader(p)
			for i := 0; ; i++ {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					if i != len(entries) {
						t.Fatalf("%d entries, want %d", i, len(entries))
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if h.Typeflag != tar.TypeReg {
					continue
				}
				var got []byte
				if i%2 == 0 || h.Size > streamBuf {
					f.Truncate(0)
					f.Seek(0, io.SeekStart)
					if err := p.writeBody(int(f.Fd()), h.Size); err != nil {
						t.Fatalf("%s: %v", h.Name, err)
					}
					got, _ = os.ReadFile(f.Name())
				} else if got, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
				if want := entries[i].body; h.Name != entries[i].hdr.Name || string(got) != want {
					t.Fatalf("%s: %d bytes, want %d", h.Name, len(got), len(want))
				}
			}

			// Cut the stream in a body that is written, then in one that is skipped.
			for _, cut := range []int{5000, len(raw) - 4096} {
				p := newStreamReader(wrap(bytes.NewReader(raw[:cut])))
				tr := tar.NewReader(p)
				var err error
				for err == nil {
					var h *tar.Header
					if h, err = tr.Next(); err == nil && h.Typeflag == tar.TypeReg && cut < 10000 {
						f.Seek(0, io.SeekStart)
						err = p.writeBody(int(f.Fd()), h.Size)
					}
				}
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("stream cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
				}
			}
		})
	}
}

// oddReader returns pieces of 1 to 1000 bytes, never aligned to the tar blocks.
type oddReader struct {
	r io.Reader
	n int
}

func (o *oddReader) Read(b []byte) (int, error) {
	o.n = o.n%997 + 13
	return o.r.Read(b[:min(len(b), o.n)])
}

// stallReader returns nothing, without an error, every other call.
type stallReader struct {
	r     io.Reader
	stall bool
}

func (s *stallReader) Read(b []byte) (int, error) {
	if s.stall = !s.stall; s.stall {
		return 0, nil
	}
	return s.r.Read(b)
}
