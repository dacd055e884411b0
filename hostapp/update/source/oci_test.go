package source

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var (
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64"}
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
)

// ociImage is a one-layer image of the small root filesystem plus /etc/arch saying arch.
func ociImage(t *testing.T, arch string) v1.Image {
	t.Helper()
	b := tarBytes(t, append(rootEntries(), reg("etc/arch", arch)))
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// multiArch is an index of an arm64 and an amd64 image and an attestation-like unknown/unknown one.
func multiArch(t *testing.T) v1.ImageIndex {
	t.Helper()
	return mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: ociImage(t, "amd64"), Descriptor: v1.Descriptor{Platform: &amd64}},
		mutate.IndexAddendum{Add: ociImage(t, "arm64"), Descriptor: v1.Descriptor{Platform: &arm64}},
		mutate.IndexAddendum{Add: ociImage(t, "unknown"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}},
	)
}

func TestOpenOCILayout(t *testing.T) {
	needTools(t)
	d := t.TempDir()
	single := filepath.Join(d, "single")
	lp, err := layout.Write(single, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(ociImage(t, "any")); err != nil {
		t.Fatal(err)
	}
	multi := filepath.Join(d, "multi")
	if _, err := layout.Write(multi, multiArch(t)); err != nil {
		t.Fatal(err)
	}

	// An OCI archive: the multi-platform layout as a plain tar.
	archive := filepath.Join(d, "multi.tar")
	af, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(af)
	if err := tw.AddFS(os.DirFS(multi)); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	af.Close()

	tests := []struct {
		name, src, deviceType, wantArch string
		wantErr                         error
	}{
		{"OCI archive for aarch64", archive, rpi4, "arm64", nil},
		{"OCI archive without the arch", archive, "raspberrypi3", "", ErrWrongDeviceType},
		{"single image", single, "", "any", nil},
		{"single image, device type given", single, rpi4, "any", nil},
		{"multi-arch for aarch64", multi, rpi4, "arm64", nil},
		{"multi-arch for amd64", multi, "genericx86-64-ext", "amd64", nil},
		{"multi-arch without the arch", multi, "raspberrypi3", "", ErrWrongDeviceType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			p, err := Open(context.Background(), tc.src, Options{DeviceType: tc.deviceType, RootSize: slotSize, TempDir: tmp})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Open: %v, want %v", err, tc.wantErr)
				}
				emptyDir(t, tmp)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if p.DeviceType != "" || p.Arch != "" || p.Size != slotSize {
				t.Errorf("payload %+v", p)
			}
			img, _ := readPayload(t, p)
			if got := readFile(t, img, "/etc/arch"); got != tc.wantArch {
				t.Errorf("/etc/arch = %q, want %q", got, tc.wantArch)
			}
			if got := readFile(t, img, "/bin/hello"); got != hello {
				t.Errorf("/bin/hello = %q", got)
			}
			p.Close()
			emptyDir(t, tmp)
		})
	}
}

func TestOpenDockerArchive(t *testing.T) {
	needTools(t)
	src := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(src, name.MustParseReference("hostos/root:1"), ociImage(t, "docker")); err != nil {
		t.Fatal(err)
	}
	p := mustOpen(t, src, Options{RootSize: slotSize, TempDir: t.TempDir()})
	img, _ := readPayload(t, p)
	if got := readFile(t, img, "/etc/arch"); got != "docker" {
		t.Errorf("/etc/arch = %q", got)
	}
}

func put(t *testing.T, method, url, contentType string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, b)
	}
}

func pushBlob(t *testing.T, base, repo string, h v1.Hash, b []byte) {
	t.Helper()
	put(t, http.MethodPost, fmt.Sprintf("%s/v2/%s/blobs/uploads/?digest=%s", base, repo, h), "application/octet-stream", b)
}

func pushImage(t *testing.T, base, repo, ref string, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		h, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		pushBlob(t, base, repo, h, b)
	}
	cfgName, _ := img.ConfigName()
	cfg, _ := img.RawConfigFile()
	pushBlob(t, base, repo, cfgName, cfg)
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	put(t, http.MethodPut, fmt.Sprintf("%s/v2/%s/manifests/%s", base, repo, ref), string(mt), raw)
}

func pushIndex(t *testing.T, base, repo, tag string, idx v1.ImageIndex) {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		pushImage(t, base, repo, d.Digest.String(), img)
	}
	raw, _ := idx.RawManifest()
	mt, _ := idx.MediaType()
	put(t, http.MethodPut, fmt.Sprintf("%s/v2/%s/manifests/%s", base, repo, tag), string(mt), raw)
}

// tokenAuth puts a registry behind bearer token authentication, as Docker Hub does.
func tokenAuth(next http.Handler, tokens *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			if r.URL.Query().Get("scope") != "repository:hostos/root:pull" || r.URL.Query().Get("service") != "test" {
				http.Error(w, "bad scope", http.StatusBadRequest)
				return
			}
			tokens.Add(1)
			fmt.Fprint(w, `{"token":"let-me-in"}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer let-me-in" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test",scope="repository:hostos/root:pull"`, r.Host))
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func TestOpenRegistry(t *testing.T) {
	needTools(t)
	var tokens, requests atomic.Int32
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	authed := httptest.NewServer(tokenAuth(reg, &tokens))
	defer authed.Close()

	pushImage(t, srv.URL, "hostos/root", "single", ociImage(t, "single"))
	pushIndex(t, srv.URL, "hostos/root", "multi", multiArch(t))
	host := strings.TrimPrefix(srv.URL, "http://")
	authedHost := strings.TrimPrefix(authed.URL, "http://")

	tests := []struct {
		name, ref, deviceType, wantArch string
	}{
		{"tag", "docker://" + host + "/hostos/root:single", "", "single"},
		{"oci prefix", "oci://" + host + "/hostos/root:single", rpi4, "single"},
		{"index for aarch64", "docker://" + host + "/hostos/root:multi", rpi4, "arm64"},
		{"index for amd64", "docker://" + host + "/hostos/root:multi", "genericx86-64-ext", "amd64"},
		{"bearer token", "docker://" + authedHost + "/hostos/root:multi", rpi4, "arm64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			var downloaded int64
			p := mustOpen(t, tc.ref, Options{DeviceType: tc.deviceType, RootSize: slotSize, TempDir: tmp,
				Progress: func(step string, done, total int64) {
					if step == "download" {
						downloaded = done
						if done > total {
							t.Errorf("download progress %d of %d", done, total)
						}
					}
				}})
			img, _ := readPayload(t, p)
			if got := readFile(t, img, "/etc/arch"); got != tc.wantArch {
				t.Errorf("/etc/arch = %q, want %q", got, tc.wantArch)
			}
			if downloaded == 0 {
				t.Error("no download progress")
			}
			p.Close()
			emptyDir(t, tmp)
		})
	}
	if tokens.Load() == 0 {
		t.Error("no token was fetched")
	}

	// By digest: the manifest is checked against it.
	single, _ := ociImage(t, "single").Digest()
	p := mustOpen(t, "docker://"+host+"/hostos/root@"+single.String(), Options{RootSize: slotSize, TempDir: t.TempDir()})
	img, _ := readPayload(t, p)
	if got := readFile(t, img, "/etc/arch"); got != "single" {
		t.Errorf("by digest: /etc/arch = %q", got)
	}

	for _, tc := range []struct {
		name, ref, deviceType string
		want                  error
	}{
		{"missing tag", "docker://" + host + "/hostos/root:nothing", "", nil},
		{"no image for the arch", "docker://" + host + "/hostos/root:multi", "raspberrypi3", ErrWrongDeviceType},
		{"bad reference", "docker://" + host + "/Hostos/ROOT:1", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			_, err := Open(context.Background(), tc.ref, Options{DeviceType: tc.deviceType, RootSize: slotSize, TempDir: tmp})
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Open: %v, want an error (%v)", err, tc.want)
			}
			emptyDir(t, tmp)
		})
	}
}

// A registry serving a layer that does not match its digest fails the pull.
func TestOpenRegistryCorruptLayer(t *testing.T) {
	needTools(t)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	img := ociImage(t, "x")
	layers, _ := img.Layers()
	bad, _ := layers[0].Digest()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+bad.String()) {
			rc, _ := layers[0].Compressed()
			b, _ := io.ReadAll(rc)
			b[len(b)/2] ^= 0xff
			w.Write(b)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	pushImage(t, srv.URL, "hostos/root", "1", img)
	tmp := t.TempDir()
	_, err := Open(context.Background(), "docker://"+strings.TrimPrefix(srv.URL, "http://")+"/hostos/root:1", Options{RootSize: slotSize, TempDir: tmp})
	if err == nil || !strings.Contains(err.Error(), "error verifying sha256 checksum") || !strings.Contains(err.Error(), bad.String()) {
		t.Fatalf("Open: %v, want a digest mismatch of %s", err, bad)
	}
	emptyDir(t, tmp)
}
