package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/rootfs/tree"
)

// Bounds on what is read into memory from a registry.
const (
	maxManifest = 4 << 20
	maxConfig   = 8 << 20
	maxToken    = 1 << 20
)

// acceptManifests are the manifest media types a pull asks for.
var acceptManifests = strings.Join([]string{
	string(types.OCIImageIndex), string(types.OCIManifestSchema1),
	string(types.DockerManifestList), string(types.DockerManifestSchema2),
}, ", ")

// openRegistry pulls an image from a registry into an OCI layout in TempDir and makes it into an image.
func openRegistry(ctx context.Context, ref string, o Options) (*Payload, error) {
	if err := refuseUnsigned(ref, "registry image", o); err != nil {
		return nil, err
	}
	if err := needSlotSize(ref, o); err != nil {
		return nil, err
	}
	s := strings.TrimPrefix(strings.TrimPrefix(ref, prefixDocker), prefixOCI)
	r, err := name.ParseReference(s)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", ref, err)
	}
	c := &repoClient{http: o.HTTPClient, repo: r.Context()}
	c.base = schemeOf(r.Context().Registry) + "://" + r.Context().RegistryStr() + "/v2/" + r.Context().RepositoryStr()
	img, err := c.image(ctx, r.Identifier(), o)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", ref, err)
	}
	work, err := os.MkdirTemp(o.TempDir, ".hostos-update-")
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", ref, err)
	}
	dir := filepath.Join(work, "oci")
	if err := writeLayout(dir, img); err != nil {
		os.RemoveAll(work)
		return nil, fmt.Errorf("update %s: pull: %w", ref, err)
	}
	return fromTree(ctx, ref, dir, work, o)
}

// schemeOf is https, or http for a registry on a loopback address.
func schemeOf(r name.Registry) string {
	host := r.RegistryStr()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return "http"
	}
	return "https"
}

// writeLayout writes img as the only image of a new OCI layout at dir.
func writeLayout(dir string, img v1.Image) error {
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return lp.AppendImage(img)
}

// repoClient pulls from one repository of a registry with the OCI distribution API, anonymously.
type repoClient struct {
	http  *http.Client
	repo  name.Repository
	base  string // scheme://registry/v2/repository
	mu    sync.Mutex
	token string // bearer token, once a challenge asked for one
}

// get fetches base+path, answering a bearer challenge once.
func (c *repoClient) get(ctx context.Context, path, accept string) (*http.Response, error) {
	for retried := false; ; retried = true {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
		if err != nil {
			return nil, err
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		c.mu.Lock()
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		c.mu.Unlock()
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("registry %s: %w", c.repo.RegistryStr(), scrubURLError(err))
		}
		if resp.StatusCode == http.StatusUnauthorized && !retried {
			challenge := resp.Header.Get("WWW-Authenticate")
			resp.Body.Close()
			if err := c.authenticate(ctx, challenge); err != nil {
				return nil, err
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			defer resp.Body.Close()
			return nil, fmt.Errorf("registry %s: %s %s: %s", c.repo.RegistryStr(), c.repo.RepositoryStr(), path, registryError(resp))
		}
		return resp, nil
	}
}

// registryError describes a failed response: its status and the registry's own message, if any.
func registryError(resp *http.Response) string {
	var body struct {
		Errors []struct{ Code, Message string }
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		return fmt.Sprintf("HTTP %s: %s %s", resp.Status, body.Errors[0].Code, body.Errors[0].Message)
	}
	return "HTTP " + resp.Status
}

// authenticate answers a bearer challenge by fetching an anonymous pull token.
func (c *repoClient) authenticate(ctx context.Context, challenge string) error {
	scheme, params := parseChallenge(challenge)
	if !strings.EqualFold(scheme, "bearer") || params["realm"] == "" {
		return fmt.Errorf("registry %s: asks for credentials (%q); pulls are anonymous", c.repo.RegistryStr(), scheme)
	}
	u, err := url.Parse(params["realm"])
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("registry %s: token realm %q: not an http(s) URL", c.repo.RegistryStr(), params["realm"])
	}
	q := u.Query()
	if params["service"] != "" {
		q.Set("service", params["service"])
	}
	scope := params["scope"]
	if scope == "" {
		scope = c.repo.Scope("pull")
	}
	q.Set("scope", scope)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("registry %s: token: %w", c.repo.RegistryStr(), scrubURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("registry %s: token: HTTP %s", c.repo.RegistryStr(), resp.Status)
	}
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxToken)).Decode(&tok); err != nil {
		return fmt.Errorf("registry %s: token: %w", c.repo.RegistryStr(), err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = tok.Token
	if c.token == "" {
		c.token = tok.AccessToken
	}
	if c.token == "" {
		return fmt.Errorf("registry %s: token: none in the answer", c.repo.RegistryStr())
	}
	return nil
}

// parseChallenge splits a WWW-Authenticate value into its scheme and parameters.
func parseChallenge(s string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(s), " ")
	params := map[string]string{}
	for {
		rest = strings.TrimLeft(rest, " ,")
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			return scheme, params
		}
		var val strings.Builder
		if strings.HasPrefix(after, `"`) {
			i := 1
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				val.WriteByte(after[i])
			}
			rest = after[min(i+1, len(after)):]
		} else {
			v, r, _ := strings.Cut(after, ",")
			val.WriteString(strings.TrimSpace(v))
			rest = r
		}
		params[strings.ToLower(strings.TrimSpace(key))] = val.String()
	}
}

// manifest fetches the manifest ref (a tag or a digest) and checks it against its digest.
func (c *repoClient) manifest(ctx context.Context, ref string) ([]byte, types.MediaType, error) {
	resp, err := c.get(ctx, "/manifests/"+ref, acceptManifests)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
	if err != nil {
		return nil, "", fmt.Errorf("manifest %s: %w", ref, err)
	}
	if len(raw) > maxManifest {
		return nil, "", fmt.Errorf("manifest %s: more than %d bytes", ref, maxManifest)
	}
	want := resp.Header.Get("Docker-Content-Digest")
	if strings.HasPrefix(ref, "sha256:") {
		want = ref
	}
	if want != "" {
		sum := sha256.Sum256(raw)
		if got := "sha256:" + hex.EncodeToString(sum[:]); strings.HasPrefix(want, "sha256:") && got != want {
			return nil, "", fmt.Errorf("manifest %s: digest %s, want %s", ref, got, want)
		}
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "" || mt == "application/json" || mt == "text/plain" {
		var probe struct {
			MediaType string `json:"mediaType"`
		}
		json.Unmarshal(raw, &probe)
		mt = probe.MediaType
	}
	return raw, types.MediaType(mt), nil
}

// image resolves ref to the image for o's platform and returns it, its layers fetched lazily.
func (c *repoClient) image(ctx context.Context, ref string, o Options) (v1.Image, error) {
	raw, mt, err := c.manifest(ctx, ref)
	if err != nil {
		return nil, err
	}
	if mt.IsIndex() {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", ref, err)
		}
		d, err := pickImage(idx.Manifests, o)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", ref, err)
		}
		if raw, mt, err = c.manifest(ctx, d.Digest.String()); err != nil {
			return nil, err
		}
	}
	if !mt.IsImage() {
		return nil, fmt.Errorf("manifest %s: media type %q is not an image", ref, mt)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", ref, err)
	}
	if m.Config.Size > maxConfig {
		return nil, fmt.Errorf("image config %s: %d bytes, more than %d", m.Config.Digest, m.Config.Size, maxConfig)
	}
	rc, err := c.blob(ctx, m.Config)
	if err != nil {
		return nil, err
	}
	cfg, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("image config %s: %w", m.Config.Digest, err)
	}
	var total int64
	for _, l := range m.Layers {
		total += l.Size
	}
	ri := &remoteImage{c: c, ctx: ctx, raw: raw, config: cfg, mt: mt, m: m,
		progress: func(done int64) { o.Progress("download", done, total) }}
	return partial.CompressedToImage(ri)
}

// blob fetches a blob and checks its size and digest as it is read: a mismatch is an error in place
// of io.EOF.
func (c *repoClient) blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	if d.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("blob %s: unsupported digest algorithm", d.Digest)
	}
	resp, err := c.get(ctx, "/blobs/"+d.Digest.String(), "")
	if err != nil {
		return nil, err
	}
	return &verifier{rc: resp.Body, h: sha256.New(), want: d.Digest, size: d.Size}, nil
}

// verifier checks a blob against its descriptor while it is read.
type verifier struct {
	rc   io.ReadCloser
	h    hash.Hash
	want v1.Hash
	size int64
	n    int64
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	switch {
	case v.n > v.size:
		return n, fmt.Errorf("blob %s: more than its %d bytes", v.want, v.size)
	case err == io.EOF && v.n != v.size:
		return n, fmt.Errorf("blob %s: %d bytes, want %d", v.want, v.n, v.size)
	case err == io.EOF && hex.EncodeToString(v.h.Sum(nil)) != v.want.Hex:
		return n, fmt.Errorf("blob %s: digest mismatch", v.want)
	}
	return n, err
}

func (v *verifier) Close() error { return v.rc.Close() }

// remoteImage is an image whose manifest and config are fetched and whose layers are fetched on read.
type remoteImage struct {
	c        *repoClient
	ctx      context.Context
	raw      []byte
	config   []byte
	mt       types.MediaType
	m        *v1.Manifest
	done     atomic.Int64
	progress func(done int64)
}

func (i *remoteImage) RawConfigFile() ([]byte, error)      { return i.config, nil }
func (i *remoteImage) MediaType() (types.MediaType, error) { return i.mt, nil }
func (i *remoteImage) RawManifest() ([]byte, error)        { return i.raw, nil }

func (i *remoteImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range i.m.Layers {
		if d.Digest == h {
			return &remoteLayer{img: i, d: d}, nil
		}
	}
	return nil, fmt.Errorf("layer %s: not in the manifest", h)
}

type remoteLayer struct {
	img *remoteImage
	d   v1.Descriptor
}

func (l *remoteLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *remoteLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *remoteLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }

func (l *remoteLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.img.c.blob(l.img.ctx, l.d)
	if err != nil {
		return nil, err
	}
	return &progressReadCloser{ReadCloser: rc, img: l.img}, nil
}

// progressReadCloser adds what a layer read to its image's download progress.
type progressReadCloser struct {
	io.ReadCloser
	img *remoteImage
}

func (p *progressReadCloser) Read(b []byte) (int, error) {
	n, err := p.ReadCloser.Read(b)
	if n > 0 {
		p.img.progress(p.img.done.Add(int64(n)))
	}
	return n, err
}

// targetPlatform is the OCI platform of images for the target: the device type's arch, or the host's.
func targetPlatform(o Options) v1.Platform {
	arch := ""
	if o.DeviceType != "" {
		if dt, err := config.LookupDeviceType(o.DeviceType); err == nil {
			arch = dt.Arch
		}
	}
	switch arch {
	case "amd64":
		return v1.Platform{OS: "linux", Architecture: "amd64"}
	case "aarch64":
		return v1.Platform{OS: "linux", Architecture: "arm64"}
	case "armv7hf":
		return v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	case "rpi", "armv6":
		return v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}
	case "armv5e":
		return v1.Platform{OS: "linux", Architecture: "arm", Variant: "v5"}
	case "i386", "i386-nlp":
		return v1.Platform{OS: "linux", Architecture: "386"}
	}
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// defaultVariant is the variant an image of the arch has when it names none.
var defaultVariant = map[string]string{"arm64": "v8", "arm": "v7"}

func platformMatches(have *v1.Platform, want v1.Platform) bool {
	if have == nil || have.OS != want.OS || have.Architecture != want.Architecture {
		return false
	}
	hv, wv := have.Variant, want.Variant
	if hv == "" {
		hv = defaultVariant[have.Architecture]
	}
	if wv == "" {
		wv = defaultVariant[want.Architecture]
	}
	return hv == wv
}

// pickImage chooses among the descriptors of an index the image for o's platform; a lone image that
// names no platform is taken as it is. Attestation manifests (platform unknown/unknown) do not count.
func pickImage(descs []v1.Descriptor, o Options) (v1.Descriptor, error) {
	want := targetPlatform(o)
	var images, match []v1.Descriptor
	var names []string
	for _, d := range descs {
		if !d.MediaType.IsImage() || d.Platform != nil && d.Platform.OS == "unknown" {
			continue
		}
		images = append(images, d)
		if d.Platform != nil {
			names = append(names, d.Platform.String())
		}
		if platformMatches(d.Platform, want) {
			match = append(match, d)
		}
	}
	switch {
	case len(match) == 1:
		return match[0], nil
	case len(match) > 1:
		return v1.Descriptor{}, fmt.Errorf("%d images for %s", len(match), want)
	case len(images) == 1 && images[0].Platform == nil:
		return images[0], nil
	case len(images) == 0:
		return v1.Descriptor{}, errors.New("no image")
	}
	err := fmt.Errorf("no image for %s among %s", want, strings.Join(names, ", "))
	if o.DeviceType != "" {
		err = fmt.Errorf("%w: %w", ErrWrongDeviceType, err)
	}
	return v1.Descriptor{}, err
}

// singleImageLayout returns an OCI layout of one image for src: src itself when it holds one image,
// else a copy at dst of the image for o's platform (tree.Stage would otherwise take linux/amd64).
func singleImageLayout(src, dst string, o Options) (string, error) {
	idx, err := layout.ImageIndexFromPath(src)
	if err != nil {
		return "", fmt.Errorf("OCI layout %s: %w", src, err)
	}
	all, err := tree.Images(idx)
	if err != nil {
		return "", fmt.Errorf("OCI layout %s: %w", src, err)
	}
	if len(all) <= 1 {
		return src, nil
	}
	descs := make([]v1.Descriptor, len(all))
	for i, f := range all {
		descs[i] = f.Desc
	}
	d, err := pickImage(descs, o)
	if err != nil {
		return "", fmt.Errorf("OCI layout %s: %w", src, err)
	}
	for _, f := range all {
		if f.Desc.Digest != d.Digest {
			continue
		}
		img, err := f.Index.Image(d.Digest)
		if err == nil {
			err = writeLayout(dst, img)
		}
		if err != nil {
			return "", fmt.Errorf("OCI layout %s: image %s: %w", src, d.Digest, err)
		}
		return dst, nil
	}
	return "", fmt.Errorf("OCI layout %s: image %s vanished", src, d.Digest)
}
