//go:build linux

package source

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/zstd"

	"github.com/hostos/hostos/hostapp/container"
	"github.com/hostos/hostos/hostapp/container/containertest"
	"github.com/hostos/hostos/hostapp/fetch"
)

// quick are short timeouts for test servers; the tests assert errors and bytes, never durations.
var quick = fetch.Options{HeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond, Tries: 2,
	RetryWait: 10 * time.Millisecond}

// patient are options for servers that do not stall, with room for a loaded machine.
var patient = fetch.Options{Tries: 3, RetryWait: 10 * time.Millisecond}

// checkBundlePayload reads a payload's image and boot files and checks the image against the bundle's digest.
func checkBundlePayload(t *testing.T, p *Payload) {
	t.Helper()
	img, boot := readPayload(t, p)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if p.ImageSHA256 == "" || hex.EncodeToString(sum[:]) != p.ImageSHA256 {
		t.Errorf("image sha256 %x, the bundle says %s", sum, p.ImageSHA256)
	}
	if readFile(t, img, "/bin/hello") != hello || boot["boot/Image"] != "kernel" {
		t.Errorf("content: boot files %v", boot)
	}
}

// An HTTP source on a server that stalls, drops or changes the object: the update resumes what can be
// resumed and gives exact bytes, and fails with one line otherwise, leaving the staging directory empty.
func TestOpenHTTPFaults(t *testing.T) {
	needTools(t)
	k := newKey(t)
	b := makeBundle(t, rpi4, k.priv)
	rootTar := tarBytes(t, rootEntries())
	other := tarBytes(t, append(rootEntries(), reg("etc/changed", "yes")))
	bundleCut := metadataEnd(t, b) + 1000 // a stall inside the root filesystem, past the checked metadata
	var tries sync.Map                    // path → *atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := tries.LoadOrStore(r.URL.Path, new(atomic.Int32))
		try := v.(*atomic.Int32).Add(1)
		// cut serves the first try partly, with validators and range support, and drops it.
		cut := func(body []byte, etag string) bool {
			if try > 1 {
				return false
			}
			w.Header().Set("ETag", etag)
			w.Header().Set("Accept-Ranges", "bytes")
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		switch r.URL.Path {
		case "/resume.bundle":
			if !cut(b, `"b1"`) {
				w.Header().Set("ETag", `"b1"`)
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
			}
		case "/resume.tar":
			if !cut(rootTar, `"t1"`) {
				w.Header().Set("ETag", `"t1"`)
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(rootTar))
			}
		case "/changed.tar":
			if !cut(rootTar, `"t1"`) {
				w.Header().Set("ETag", `"t2"`)
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(other))
			}
		case "/norange.tar":
			w.Header().Set("Content-Length", fmt.Sprint(len(rootTar)))
			w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
			if try == 1 {
				w.Write(rootTar[:len(rootTar)/2])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
			w.Write(rootTar) // no ranges: the whole object again
		case "/stall-headers":
			select {
			case <-r.Context().Done():
			case <-release:
			}
		case "/stall-body.bundle", "/stall-body.tar":
			body, at := b, bundleCut
			if strings.HasSuffix(r.URL.Path, ".tar") {
				body, at = rootTar, 1024
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.Write(body[:at])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	defer close(release)

	t.Run("bundle resumed", func(t *testing.T) {
		tmp := t.TempDir()
		p := mustOpen(t, srv.URL+"/resume.bundle", Options{Keys: []ed25519.PublicKey{k.pub}, DeviceType: rpi4, TempDir: tmp, Fetch: patient})
		checkBundlePayload(t, p)
		emptyDir(t, tmp)
	})
	t.Run("tar resumed", func(t *testing.T) {
		tmp := t.TempDir()
		p := mustOpen(t, srv.URL+"/resume.tar", Options{RootSize: slotSize, TempDir: tmp, Fetch: patient})
		img, _ := readPayload(t, p)
		if readFile(t, img, "/bin/hello") != hello {
			t.Error("content")
		}
		p.Close()
		emptyDir(t, tmp)
	})
	for _, tc := range []struct{ name, path, want string }{
		{"object changed", "/changed.tar", "the object changed on the server"},
		{"no range support", "/norange.tar", "the server does not accept range requests"},
		{"stall before headers", "/stall-headers", "no response headers for 300ms"},
		{"stall after headers", "/stall-body.tar", "no data for 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			_, err := Open(context.Background(), srv.URL+tc.path, Options{RootSize: slotSize, TempDir: tmp, Fetch: quick})
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Open: %v, want one line saying %q", err, tc.want)
			}
			t.Logf("%v", err)
			emptyDir(t, tmp)
		})
	}
	t.Run("bundle stalls while streamed", func(t *testing.T) {
		p := mustOpen(t, srv.URL+"/stall-body.bundle", Options{Fetch: quick})
		_, err := io.Copy(io.Discard, p.Image)
		if !errors.Is(err, fetch.ErrTimeout) || !strings.Contains(err.Error(), "no data for 300ms") {
			t.Fatalf("reading a stalled bundle: %v", err)
		}
	})
}

// Defect 8: a stream that is not a bundle is bounded by what the slot can take, and its entries and
// bytes are checked against the slot before anything is staged.
func TestOpenBounded(t *testing.T) {
	const small = 4 << 20 // a slot of 4 MiB takes at most 4+1+16 MiB of stream
	limit := streamLimit(small)
	t.Run("/dev/zero", func(t *testing.T) {
		tmp := t.TempDir()
		_, err := Open(context.Background(), "/dev/zero", Options{RootSize: small, TempDir: tmp})
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprintf("more than the %d MiB", limit/mib)) {
			t.Fatalf("Open /dev/zero: %v", err)
		}
		emptyDir(t, tmp)
	})
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/endless": // chunked, never ends
			zeros := make([]byte, 64<<10)
			for r.Context().Err() == nil {
				n, err := w.Write(zeros)
				served.Add(int64(n))
				if err != nil {
					return
				}
			}
		case "/huge": // says it is 1 TiB
			w.Header().Set("Content-Length", fmt.Sprint(int64(1)<<40))
			w.Write(make([]byte, 4096))
		}
	}))
	defer srv.Close()
	t.Run("endless chunked body", func(t *testing.T) {
		tmp := t.TempDir()
		_, err := Open(context.Background(), srv.URL+"/endless", Options{RootSize: small, TempDir: tmp, Fetch: patient})
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprintf("%d MiB", limit/mib)) {
			t.Fatalf("Open of an endless body: %v", err)
		}
		emptyDir(t, tmp)
	})
	t.Run("Content-Length past the limit", func(t *testing.T) {
		tmp := t.TempDir()
		_, err := Open(context.Background(), srv.URL+"/huge", Options{RootSize: small, TempDir: tmp, Fetch: patient})
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1048576 MiB") {
			t.Fatalf("Open of a 1 TiB body: %v", err)
		}
		emptyDir(t, tmp)
	})
	t.Run("no slot size", func(t *testing.T) {
		tmp := t.TempDir()
		_, err := Open(context.Background(), "/dev/zero", Options{TempDir: tmp})
		if err == nil || !strings.Contains(err.Error(), "slot size") {
			t.Fatalf("Open /dev/zero without a slot size: %v", err)
		}
		emptyDir(t, tmp)
	})
}

// A compressed tar whose files expand past the slot, and one with more entries than the slot has
// inodes, fail before staging writes anything.
func TestOpenCheckedBeforeStaging(t *testing.T) {
	needTools(t)
	d := t.TempDir()
	// 64 MiB of zeros in one file, a few KiB compressed.
	bomb := filepath.Join(d, "bomb.tar.zst")
	f, err := os.Create(bomb)
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := zstd.NewWriter(f)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "zeros", Mode: 0o644, Size: 64 << 20})
	zeros := make([]byte, 1<<20)
	for range 64 {
		tw.Write(zeros)
	}
	tw.Close()
	zw.Close()
	f.Close()
	// 5000 empty files: a 16 MiB slot has 2048 inodes.
	var many []entry
	for i := range 5000 {
		many = append(many, reg(fmt.Sprintf("f/%d", i), ""))
	}
	manyTar := writeFile(t, filepath.Join(d, "many.tar"), tarBytes(t, many))
	for _, tc := range []struct{ name, src, want string }{
		{"bytes", bomb, "its files hold at least 64 MiB, the slot has 16 MiB"},
		{"entries", manyTar, "a slot of 16 MiB has 2048 inodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			var mu sync.Mutex
			steps := map[string]bool{}
			_, err := Open(context.Background(), tc.src, Options{RootSize: slotSize, TempDir: tmp, Progress: func(step string, _, _ int64) {
				mu.Lock()
				steps[step] = true
				mu.Unlock()
			}})
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want ErrTooLarge saying %q", err, tc.want)
			}
			if steps["stage root filesystem"] {
				t.Errorf("staging began before the check refused the source (steps %v)", steps)
			}
			emptyDir(t, tmp)
		})
	}
	// A name given twice counts once: a tar that rewrites one file many times still fits.
	var rewrites []entry
	for i := range 3000 {
		rewrites = append(rewrites, reg("etc/same", fmt.Sprint(i)))
	}
	p := mustOpen(t, writeFile(t, filepath.Join(d, "rewrites.tar"), tarBytes(t, append(rewrites, rootEntries()...))),
		Options{RootSize: slotSize, TempDir: t.TempDir()})
	img, _ := readPayload(t, p)
	if got := readFile(t, img, "/etc/same"); got != "2999" {
		t.Errorf("/etc/same = %q", got)
	}
}

// The source path and the preload-facing function against Debian's docker-registry with htpasswd and
// TLS from a test CA: the same image comes out of both.
func TestOpenRealRegistry(t *testing.T) {
	needTools(t)
	reg := containertest.StartRegistry(t, "hostos", "s3cr3t")
	auth, _ := container.ParseCredentials("hostos:s3cr3t")
	ref, err := name.ParseReference(reg.Host + "/hostos/root:multi")
	if err != nil {
		t.Fatal(err)
	}
	idx := multiArch(t)
	if err := remote.WriteIndex(ref, idx, remote.WithAuth(auth), remote.WithTransport(&http.Transport{TLSClientConfig: tlsConfig(reg)})); err != nil {
		t.Fatalf("push: %v", err)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	o := Options{DeviceType: rpi4, RootSize: slotSize, TempDir: t.TempDir(), RegistryAuth: auth,
		Fetch: fetch.Options{RootCAs: reg.CAs, Tries: 2, RetryWait: 10 * time.Millisecond}}
	p := mustOpen(t, "docker://"+reg.Host+"/hostos/root:multi", o)
	img, _ := readPayload(t, p)
	if got := readFile(t, img, "/etc/arch"); got != "arm64" {
		t.Errorf("/etc/arch = %q, want arm64", got)
	}
	p.Close()
	emptyDir(t, o.TempDir)

	pre, err := container.Open(context.Background(), "docker://"+reg.Host+"/hostos/root:multi",
		container.Options{Platform: arm64, Auth: auth, Fetch: o.Fetch})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := multiArch(t).IndexManifest()
	got, _ := pre.Digest()
	var found bool
	for _, d := range want.Manifests {
		found = found || d.Platform != nil && d.Platform.Architecture == "arm64" && d.Digest == got
	}
	if !found {
		t.Errorf("preload's image %s is not the index's arm64 image", got)
	}

	bad, _ := container.ParseCredentials("hostos:wrong")
	o.RegistryAuth = bad
	_, err = Open(context.Background(), "docker://"+reg.Host+"/hostos/root:multi", o)
	if !errors.Is(err, container.ErrAuth) || strings.Contains(err.Error(), "\n") {
		t.Errorf("wrong password: %v", err)
	}
	o.RegistryAuth = auth
	o.DeviceType = "raspberrypi3"
	_, err = Open(context.Background(), "docker://"+reg.Host+"/hostos/root:multi", o)
	if !errors.Is(err, ErrWrongDeviceType) || !strings.Contains(err.Error(), "linux/arm/v7") {
		t.Errorf("no image for the arch: %v", err)
	}
	emptyDir(t, o.TempDir)
}

func tlsConfig(reg containertest.Registry) *tls.Config { return &tls.Config{RootCAs: reg.CAs} }
