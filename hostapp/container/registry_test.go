package container

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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
	"golang.org/x/crypto/bcrypt"

	"github.com/hostos/hostos/hostapp/fetch"
	"github.com/hostos/hostos/tests/testtool"
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

// testCA makes a CA and a server certificate for 127.0.0.1 signed by it, written as PEM files in dir.
func testCA(t *testing.T, dir string) (pool *x509.CertPool, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hostos test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certFile, keyFile
}

// freePort is a TCP port on 127.0.0.1 free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// realRegistry starts Debian's docker-registry (distribution 2.8) on 127.0.0.1 with htpasswd
// authentication for user:pass and TLS from a test CA, and stops it when the test ends.
func realRegistry(t *testing.T, user, pass string) (host string, pool *x509.CertPool, proc *os.Process) {
	t.Helper()
	bin := testtool.Need(t, "docker-registry")
	dir := t.TempDir()
	pool, cert, key := testCA(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600)
	host = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	config := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
  secret: hostos-test
  tls:
    certificate: %s
    key: %s
auth:
  htpasswd:
    realm: hostos-test
    path: %s
`, filepath.Join(dir, "storage"), host, cert, key, htpasswd)
	cfgFile := filepath.Join(dir, "config.yml")
	os.WriteFile(cfgFile, []byte(config), 0o600)
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "serve", cfgFile)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("docker-registry: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		<-exited
	})
	// Ready when /v2/ asks for credentials over TLS.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := client.Get("https://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return host, pool, cmd.Process
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("docker-registry exited: %v\n%s", err, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not answer on %s: %v\n%s", host, err, stderr.String())
		}
	}
}

// Debian's docker-registry with htpasswd and TLS from a test CA: push with remote.Write, pull through
// Open, trusting the CA by option; a wrong password and an untrusted CA fail with one line.
func TestOpenRealRegistry(t *testing.T) {
	host, pool, proc := realRegistry(t, "hostos", "s3cr3t")
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
	waitStopped(t, proc.Pid)
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

// waitStopped waits until every thread of process pid is stopped: kill(2) returns before they are.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(tasks) == 0 {
			t.Fatalf("threads of %d: %v", pid, err)
		}
		stopped := 0
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			// The state follows the command name in parentheses.
			if i := bytes.LastIndexByte(b, ')'); err == nil && i+2 < len(b) && b[i+2] == 'T' {
				stopped++
			}
		}
		if stopped == len(tasks) {
			return
		}
	}
	t.Fatalf("process %d did not stop", pid)
}
