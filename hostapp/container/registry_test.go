//go:build linux

package container

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hostos/hostos/hostapp/container/containertest"
	"github.com/hostos/hostos/hostapp/fetch"
)

// quick are short timeouts for a test registry; nothing here asserts a duration.
var quick = fetch.Options{HeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond, Tries: 2,
	RetryWait: 10 * time.Millisecond}

// basicAuth puts a handler behind HTTP basic authentication for user:pass.
func basicAuth(next http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// same checks that got is want: manifest digest, config bytes, layer digests.
func same(t *testing.T, got, want v1.Image) {
	t.Helper()
	gd, err := got.Digest()
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := want.Digest()
	gc, _ := got.RawConfigFile()
	wc, _ := want.RawConfigFile()
	if gd != wd || !bytes.Equal(gc, wc) {
		t.Errorf("digest %s, want %s; config equal: %v", gd, wd, bytes.Equal(gc, wc))
	}
	gl, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	wl, _ := want.Layers()
	if len(gl) != len(wl) {
		t.Fatalf("%d layers, want %d", len(gl), len(wl))
	}
	for i := range gl {
		g, _ := gl[i].Digest()
		w, _ := wl[i].Digest()
		if g != w {
			t.Errorf("layer %d: %s, want %s", i, g, w)
		}
	}
}

// The in-process registry: anonymous, by tag, by digest, multi-platform; docker config credentials and
// explicit ones; a wrong password and a stalled registry fail with one line.
func TestOpenRegistry(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	open := httptest.NewServer(reg)
	defer open.Close()
	locked := httptest.NewServer(basicAuth(reg, "hostos", "s3cr3t"))
	defer locked.Close()
	host := strings.TrimPrefix(open.URL, "http://")
	lockedHost := strings.TrimPrefix(locked.URL, "http://")

	single := image(t, "single", &arm64)
	idx := multiArch(t)
	if err := remote.Write(ref(t, host+"/hostos/app:single"), single); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref(t, host+"/hostos/app:multi"), idx); err != nil {
		t.Fatal(err)
	}
	armFromIdx, _ := idx.Image(mustDigest(t, idx, arm64))
	sd, _ := single.Digest()
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials unless a test writes some

	for _, tc := range []struct {
		name, ref string
		p         v1.Platform
		want      v1.Image
	}{
		{"tag", "docker://" + host + "/hostos/app:single", arm64, single},
		{"digest", "docker://" + host + "/hostos/app@" + sd.String(), arm64, single},
		{"index for arm64", "docker://" + host + "/hostos/app:multi", arm64, armFromIdx},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Open(context.Background(), tc.ref, Options{Platform: tc.p, Fetch: quick})
			if err != nil {
				t.Fatal(err)
			}
			same(t, img, tc.want)
			if got := archOf(t, img); got != archOf(t, tc.want) {
				t.Errorf("/etc/arch = %q", got)
			}
		})
	}
	t.Run("wrong platform", func(t *testing.T) {
		for ref, want := range map[string]string{
			"docker://" + host + "/hostos/app:multi":  "it holds linux/amd64, linux/arm64, linux/arm/v7, the target needs linux/arm/v6",
			"docker://" + host + "/hostos/app:single": "the image is for linux/arm64, the target needs linux/arm/v6",
		} {
			_, err := Open(context.Background(), ref, Options{Platform: armv6, Fetch: quick})
			if !errors.Is(err, ErrPlatform) || !strings.Contains(err.Error(), want) {
				t.Errorf("Open %s for arm/v6: %v", ref, err)
			}
		}
	})
	t.Run("missing tag", func(t *testing.T) {
		_, err := Open(context.Background(), "docker://"+host+"/hostos/app:nothing", Options{Platform: arm64, Fetch: quick})
		if err == nil || !strings.Contains(err.Error(), "HTTP 404") || strings.Contains(err.Error(), "\n") {
			t.Errorf("missing tag: %v", err)
		}
	})

	lockedRef := "docker://" + lockedHost + "/hostos/app:single"
	t.Run("no credentials", func(t *testing.T) {
		_, err := Open(context.Background(), lockedRef, Options{Platform: arm64, Fetch: quick})
		if !errors.Is(err, ErrAuth) {
			t.Errorf("anonymous pull from a locked registry: %v", err)
		}
	})
	t.Run("explicit credentials", func(t *testing.T) {
		auth, _ := ParseCredentials("hostos:s3cr3t")
		img, err := Open(context.Background(), lockedRef, Options{Platform: arm64, Auth: auth, Fetch: quick})
		if err != nil {
			t.Fatal(err)
		}
		same(t, img, single)
		bad, _ := ParseCredentials("hostos:wrong")
		_, err = Open(context.Background(), lockedRef, Options{Platform: arm64, Auth: bad, Fetch: quick})
		if !errors.Is(err, ErrAuth) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "wrong") {
			t.Errorf("wrong password: %v", err)
		}
		t.Logf("wrong password: %v", err)
	})
	t.Run("docker config credentials", func(t *testing.T) {
		dir := t.TempDir()
		cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{lockedHost: authn.AuthConfig{Username: "hostos", Password: "s3cr3t"}}})
		if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("DOCKER_CONFIG", dir)
		img, err := Open(context.Background(), lockedRef, Options{Platform: arm64, Fetch: quick})
		if err != nil {
			t.Fatal(err)
		}
		same(t, img, single)
	})

	t.Run("stalled registry", func(t *testing.T) {
		release := make(chan struct{})
		stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		defer stalled.Close()
		defer close(release)
		_, err := Open(context.Background(), "docker://"+strings.TrimPrefix(stalled.URL, "http://")+"/hostos/app:single",
			Options{Platform: arm64, Fetch: quick})
		if !errors.Is(err, fetch.ErrTimeout) || !strings.Contains(err.Error(), "no response headers for 300ms") {
			t.Errorf("stalled registry: %v", err)
		}
		t.Logf("stalled registry: %v", err)
	})
	t.Run("stalled layer", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, mustConfig(t, single)) {
				w.Header().Set("Content-Length", fmt.Sprint(mustLayerSize(t, single)))
				w.Write([]byte{0x1f})
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-release:
				}
				return
			}
			reg.ServeHTTP(w, r)
		}))
		defer srv.Close()
		defer close(release)
		img, err := Open(context.Background(), "docker://"+strings.TrimPrefix(srv.URL, "http://")+"/hostos/app:single",
			Options{Platform: arm64, Fetch: quick})
		if err != nil {
			t.Fatal(err)
		}
		layers, _ := img.Layers()
		rc, err := layers[0].Compressed()
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		if !errors.Is(err, fetch.ErrTimeout) {
			t.Errorf("layer from a registry that stalls: %v", err)
		}
	})
	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Open(ctx, "docker://"+host+"/hostos/app:single", Options{Platform: arm64}); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled context: %v", err)
		}
	})
}

func mustDigest(t *testing.T, idx v1.ImageIndex, p v1.Platform) v1.Hash {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.String() == p.String() {
			return d.Digest
		}
	}
	t.Fatalf("no %s in the index", p)
	return v1.Hash{}
}

func mustConfig(t *testing.T, img v1.Image) string {
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// Debian's docker-registry with htpasswd and TLS from a test CA: push with remote.Write, pull through
// Open, trusting the CA by option; a wrong password and an untrusted CA fail with one line.
func TestOpenRealRegistry(t *testing.T) {
	reg := containertest.StartRegistry(t, "hostos", "s3cr3t")
	host, pool, proc := reg.Host, reg.CAs, reg.Process
	auth, _ := ParseCredentials("hostos:s3cr3t")
	tlsTransport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	idx := multiArch(t)
	single := image(t, "single", &armv7)
	if err := remote.WriteIndex(ref(t, host+"/hostos/app:multi"), idx, remote.WithAuth(auth), remote.WithTransport(tlsTransport)); err != nil {
		t.Fatalf("push: %v", err)
	}
	if err := remote.Write(ref(t, host+"/hostos/app:single"), single, remote.WithAuth(auth), remote.WithTransport(tlsTransport)); err != nil {
		t.Fatalf("push: %v", err)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	trusted := fetch.Options{RootCAs: pool, Tries: 2, RetryWait: 10 * time.Millisecond}

	armFromIdx, _ := idx.Image(mustDigest(t, idx, arm64))
	img, err := Open(context.Background(), "docker://"+host+"/hostos/app:multi", Options{Platform: arm64, Auth: auth, Fetch: trusted})
	if err != nil {
		t.Fatal(err)
	}
	same(t, img, armFromIdx)
	if got := archOf(t, img); got != "linux/arm64" {
		t.Errorf("/etc/arch = %q", got)
	}
	img, err = Open(context.Background(), "docker://"+host+"/hostos/app:single", Options{Platform: armv7, Auth: auth, Fetch: trusted})
	if err != nil {
		t.Fatal(err)
	}
	same(t, img, single)

	bad, _ := ParseCredentials("hostos:wrong")
	_, err = Open(context.Background(), "docker://"+host+"/hostos/app:multi", Options{Platform: arm64, Auth: bad, Fetch: trusted})
	if !errors.Is(err, ErrAuth) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong password: %v", err)
	}
	t.Logf("wrong password: %v", err)
	_, err = Open(context.Background(), "docker://"+host+"/hostos/app:multi", Options{Platform: arm64, Auth: auth, Fetch: quick})
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") || strings.Contains(err.Error(), "\n") {
		t.Errorf("untrusted CA: %v", err)
	}
	t.Logf("untrusted CA: %v", err)

	// A stopped registry: the kernel still accepts connections, nothing answers.
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	containertest.WaitStopped(t, proc.Pid)
	stalled := trusted
	stalled.TLSTimeout, stalled.HeaderTimeout, stalled.IdleTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
	_, err = Open(context.Background(), "docker://"+host+"/hostos/app:multi", Options{Platform: arm64, Auth: auth, Fetch: stalled})
	proc.Signal(syscall.SIGCONT)
	if err == nil || !strings.Contains(err.Error(), "TLS handshake timeout") || strings.Contains(err.Error(), "\n") {
		t.Errorf("stopped registry: %v", err)
	}
	t.Logf("stopped registry: %v", err)
}

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustLayerSize(t *testing.T, img v1.Image) int64 {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	n, err := layers[0].Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
