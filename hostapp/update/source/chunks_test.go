package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/hostapp/fetch"
)

// fakeFS is size pseudo-random bytes with an ext4 superblock that says the filesystem is size bytes of
// 4 KiB blocks: enough for the chunk source, which reads no more of a filesystem.
func fakeFS(size int, seed byte) []byte {
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	sb := b[1024:2048]
	clear(sb)
	binary.LittleEndian.PutUint32(sb[0x04:], uint32(size/4096))
	binary.LittleEndian.PutUint32(sb[0x18:], 2)
	sb[56], sb[57] = 0x53, 0xef
	return b
}

// TestChunkedHTTP: a chunked bundle served over HTTP yields the new image from the running slot's chunks
// and only the chunks it lacks, fetched; a server that stalls on a chunk fails Open with a timeout, and a
// chunk whose bytes differ from its name fails it as corrupt, before any byte of the image is handed out.
func TestChunkedHTTP(t *testing.T) {
	dir := t.TempDir()
	base := fakeFS(4<<20, 1)
	target := bytes.Clone(base)
	copy(target[3<<20:], fakeFS(64<<10, 2)[4096:])
	img := filepath.Join(dir, "v2.ext4")
	if err := os.WriteFile(img, target, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "v2.idx"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.Create(context.Background(), bundle.CreateOptions{DeviceType: "raspberrypi4-64", Arch: "aarch64",
		Version: "2", Image: img, TempDir: dir, ChunkStore: filepath.Join(dir, bundle.ChunkStoreName)}, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if m.Chunks == nil || m.Rootfs.Compression != bundle.CompressionIndex {
		t.Fatalf("metadata %+v", m)
	}

	var stall, flip atomic.Bool
	var chunkBytes atomic.Int64
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/"+bundle.ChunkStoreName+"/") {
			files.ServeHTTP(w, r)
			return
		}
		if stall.Load() {
			<-r.Context().Done()
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if flip.Load() {
			b[len(b)/2] ^= 1
		}
		chunkBytes.Add(int64(len(b)))
		w.Write(b)
	}))
	defer srv.Close()
	opts := Options{DeviceType: "raspberrypi4-64", Base: bytes.NewReader(base), BaseSize: int64(len(base)),
		Fetch: fetch.Options{HeaderTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond, Tries: 1}}

	p, err := Open(context.Background(), srv.URL+"/v2.idx", opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(p.Image)
	p.Close()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(got)
	if !bytes.Equal(got, target) || hex.EncodeToString(sum[:]) != p.ImageSHA256 {
		t.Fatal("the image from chunks differs from version 2")
	}
	t.Logf("fetched %d bytes of chunks for a %d-byte image (payload says %d transferred)", chunkBytes.Load(), len(target), p.Transferred)
	if chunkBytes.Load() == 0 || chunkBytes.Load() > 512<<10 {
		t.Errorf("fetched %d bytes of chunks for a 64 KiB change", chunkBytes.Load())
	}

	for _, tc := range []struct {
		name string
		set  *atomic.Bool
		want error
		word string
	}{
		{"stalled server", &stall, fetch.ErrTimeout, "chunk"},
		{"wrong chunk", &flip, bundle.ErrCorrupt, "sha256 mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.set.Store(true)
			defer tc.set.Store(false)
			p, err := Open(context.Background(), srv.URL+"/v2.idx", opts)
			if err == nil {
				p.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.word) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line wrapping %v with %q", err, tc.want, tc.word)
			}
		})
	}
}
