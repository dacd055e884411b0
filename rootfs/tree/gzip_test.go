package tree

import (
	"bytes"
	"compress/gzip"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenGzip reads a .tar.gz with igzip (where installed) and with the Go decoder: the same bytes, and a
// truncated or damaged stream is a read error, not a shorter tar.
func TestOpenGzip(t *testing.T) {
	d := t.TempDir()
	plain := filepath.Join(d, "root.tar")
	body := make([]byte, 3<<20)
	rand.New(rand.NewSource(1)).Read(body[:1<<20]) // incompressible, then compressible
	writeTar(t, plain, []entry{reg("a", string(body)), reg("b", strings.Repeat("hostos ", 1000))})
	want, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(want[:len(want)/2])
	zw.Close()
	zw = gzip.NewWriter(&gz) // a second member, as concatenated gzip files are
	zw.Write(want[len(want)/2:])
	zw.Close()
	good := filepath.Join(d, "root.tar.gz")
	truncated := filepath.Join(d, "truncated.tar.gz")
	damaged := filepath.Join(d, "damaged.tar.gz")
	os.WriteFile(good, gz.Bytes(), 0o644)
	os.WriteFile(truncated, gz.Bytes()[:gz.Len()/3], 0o644)
	bad := bytes.Clone(gz.Bytes())
	for i := 0; i < 64; i++ {
		bad[gz.Len()/4+i] ^= 0x5a
	}
	os.WriteFile(damaged, bad, 0o644)

	decoders := map[string]func() bool{"go": func() bool { return false }}
	if _, err := exec.LookPath("igzip"); err == nil {
		decoders["igzip"] = func() bool { return true }
	} else {
		t.Log("igzip is not installed: only the Go decoder is checked")
	}
	saved := haveIgzip
	t.Cleanup(func() { haveIgzip = saved })
	for name, use := range decoders {
		haveIgzip = use
		t.Run(name, func(t *testing.T) {
			r, err := Open(good, KindTar)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, %v; want the %d bytes of the tar", len(got), err, len(want))
			}
			for _, p := range []string{truncated, damaged} {
				r, err := Open(p, KindTar)
				if err != nil {
					continue // refused at the header: also fine
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err == nil {
					t.Errorf("%s: read %d bytes and no error", filepath.Base(p), len(got))
				}
			}
		})
	}
}
