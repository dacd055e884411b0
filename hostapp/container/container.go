// Package container opens a container image by reference, for one platform, as a go-containerregistry
// v1.Image: an OCI image layout directory, a docker save archive, an OCI archive (a tar of a layout) or a
// registry image docker://registry/repo:tag (or @sha256:…).
//
// The updater takes such an image as the next root filesystem and preload stores images in resin-data;
// both get them here, with one platform rule and one registry client (go-containerregistry's remote,
// credentials from the docker config or given explicitly, over hostapp/fetch's timeouts). It sits under
// hostapp beside those users and hostapp/fetch; nothing in rootfs/ or partition/ needs a network.
package container

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/hostos/hostos/hostapp/fetch"
	"github.com/hostos/hostos/rootfs/tree"
)

// Options say which image of a reference is wanted and how to reach a registry.
type Options struct {
	// Platform is the platform the image must be for (see PlatformOf); the zero value means linux on
	// the host's architecture. Of a multi-platform image, the image for it is taken; an image for
	// another platform is refused with an error wrapping ErrPlatform that names both.
	Platform v1.Platform
	// Auth, when set, is the one credential sent to the registry (see ParseCredentials). Nil: the
	// registry's entry in the docker config ($DOCKER_CONFIG/config.json, else ~/.docker/config.json),
	// or anonymous.
	Auth authn.Authenticator
	// Fetch bounds every connection to a registry (connect, TLS, headers, idle reads, retries); its
	// RootCAs, when set, are the only authorities trusted.
	Fetch fetch.Options
}

// PrefixRegistry marks a registry reference: "docker://registry/repo:tag".
const PrefixRegistry = "docker://"

var (
	// ErrPlatform means the reference holds no image for the wanted platform.
	ErrPlatform = errors.New("no image for the platform")
	// ErrAuth means the registry refused the credentials, or asked for some and none were given.
	ErrAuth = errors.New("registry authentication failed")
)

// Bounds on what is read into memory from an image source.
const (
	maxManifest = 4 << 20
	maxConfig   = 8 << 20
)

// Open returns the image ref names, for o.Platform, with nothing downloaded but its manifest and config:
// its layers are read when asked for (remote ones through o.Fetch's timeouts, checked against their
// digests). ref is one of
//
//   - "docker://registry/repo:tag" or "docker://registry/repo@sha256:…": a registry image, pulled over
//     https (plain http only from a loopback address), with o.Auth or the docker config's credentials;
//   - a directory holding an OCI image layout (oci-layout, index.json, blobs/);
//   - a file: a docker save archive (manifest.json) or an OCI archive (a plain tar of a layout).
//
// Of an index, the one image for o.Platform is taken; a lone image whose config names another platform
// is refused (ErrPlatform). The image's Digest is its manifest's digest as the source holds it (for a
// docker save archive without an OCI index, the digest of the manifest go-containerregistry derives).
// ctx governs every later read of the image too.
func Open(ctx context.Context, ref string, o Options) (v1.Image, error) {
	want := o.Platform
	if want.Architecture == "" {
		want = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	}
	if want.OS == "" {
		want.OS = "linux"
	}
	if s, ok := strings.CutPrefix(ref, PrefixRegistry); ok {
		img, err := openRemote(ctx, s, want, o)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		return img, nil
	}
	if ref == "" {
		return nil, errors.New("image: empty reference")
	}
	fi, err := os.Stat(ref)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	var img v1.Image
	switch {
	case fi.IsDir():
		img, err = openLayout(ref, want)
	case fi.Mode().IsRegular():
		img, err = openArchive(ref, want)
	default:
		err = errors.New("neither a directory nor a regular file")
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	return img, nil
}

// PlatformOf is the OCI platform of a balena architecture: aarch64 → linux/arm64, armv7hf →
// linux/arm/v7, rpi → linux/arm/v6, amd64 → linux/amd64, i386 and i386-nlp (no PAE) → linux/386.
func PlatformOf(arch string) (v1.Platform, error) {
	switch arch {
	case "aarch64":
		return v1.Platform{OS: "linux", Architecture: "arm64"}, nil
	case "armv7hf":
		return v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, nil
	case "rpi":
		return v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, nil
	case "amd64":
		return v1.Platform{OS: "linux", Architecture: "amd64"}, nil
	case "i386", "i386-nlp":
		return v1.Platform{OS: "linux", Architecture: "386"}, nil
	}
	return v1.Platform{}, fmt.Errorf("architecture %q: no container platform for it", arch)
}

// ParseCredentials reads "USER:PASSWORD" (the password may hold colons; one trailing line break is
// allowed, as a file holds it) into an explicit registry credential for Options.Auth.
func ParseCredentials(s string) (authn.Authenticator, error) {
	s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	user, pass, ok := strings.Cut(s, ":")
	switch {
	case !ok || user == "":
		return nil, errors.New("registry credentials: want USER:PASSWORD")
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return nil, errors.New("registry credentials: control characters")
	case pass == "":
		return nil, fmt.Errorf("registry credentials for %s: empty password", user)
	}
	return authn.FromConfig(authn.AuthConfig{Username: user, Password: pass}), nil
}

// openRemote resolves a registry reference.
func openRemote(ctx context.Context, s string, want v1.Platform, o Options) (v1.Image, error) {
	r, err := name.ParseReference(s)
	if err != nil {
		return nil, err
	}
	g := &guard{next: fetch.NewTransport(o.Fetch), httpsDown: map[string]bool{}}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(g),
		// hostapp/fetch retries; remote's own retries would multiply its tries.
		remote.WithRetryPredicate(func(error) bool { return false }),
		remote.WithUserAgent("hostos"),
		remote.WithPlatform(want),
	}
	if o.Auth != nil {
		opts = append(opts, remote.WithAuth(o.Auth))
	} else {
		opts = append(opts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return nil, registryError(ctx, r, g, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, registryError(ctx, r, g, err)
		}
		return pick(idx, want)
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("media type %q is not an image", desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, registryError(ctx, r, g, err)
	}
	if err := checkPlatform(img, want); err != nil {
		return nil, err
	}
	return img, nil
}

// registryError makes remote's errors one line naming the registry: its status and first diagnostic, or
// the network error underneath, never a request URL (which may carry a token).
func registryError(ctx context.Context, r name.Reference, g *guard, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("registry %s: %w", r.Context().RegistryStr(), ctx.Err())
	}
	var te *transport.Error
	// An answer over plain http after https failed (a TLS port answering 400 to the http half of
	// go-containerregistry's ping) hides the real failure, which the guard kept.
	plainAfterTLS := errors.As(err, &te) && te.Request != nil && te.Request.URL.Scheme == "http" && g.failure() != nil
	if te == nil || plainAfterTLS {
		if first := g.failure(); first != nil {
			err = first
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("registry %s: %w", r.Context().RegistryStr(), err)
	}
	msg := http.StatusText(te.StatusCode)
	if len(te.Errors) > 0 {
		msg = strings.ToLower(string(te.Errors[0].Code))
		if te.Errors[0].Message != "" {
			msg += ": " + te.Errors[0].Message
		}
	}
	msg = fmt.Sprintf("registry %s: %s: HTTP %d %s", r.Context().RegistryStr(), r.Context().RepositoryStr(), te.StatusCode, oneLine(msg))
	if te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden {
		return fmt.Errorf("%s: %w", msg, ErrAuth)
	}
	return errors.New(msg)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// guard refuses plain http except to a loopback address: go-containerregistry would also fall back to it
// for private (RFC 1918) and .local registries, where anybody on the path could answer. It keeps the
// first network error of the call, which go-containerregistry's https-then-http ping would bury, and
// after an https failure other than an answer in plain http it allows no http to that host.
type guard struct {
	next      http.RoundTripper
	mu        sync.Mutex
	first     error
	httpsDown map[string]bool
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	if req.URL.Scheme == "http" {
		g.mu.Lock()
		down := g.httpsDown[host]
		g.mu.Unlock()
		if !isLoopback(req.URL.Hostname()) || down {
			return nil, fmt.Errorf("%s: plain http only to a loopback registry that does not speak https", host)
		}
	}
	resp, err := g.next.RoundTrip(req)
	if err != nil && req.Context().Err() == nil {
		g.mu.Lock()
		var plain tls.RecordHeaderError
		if !errors.As(err, &plain) {
			if g.first == nil {
				g.first = err
			}
			if req.URL.Scheme == "https" {
				g.httpsDown[host] = true
			}
		}
		g.mu.Unlock()
	}
	return resp, err
}

// failure is the first network error the guard saw, if any.
func (g *guard) failure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.first
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openLayout opens an OCI image layout directory.
func openLayout(dir string, want v1.Platform) (v1.Image, error) {
	if _, err := os.Stat(dir + "/oci-layout"); err != nil {
		return nil, errors.New("a directory that is not an OCI image layout (no oci-layout file)")
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI layout: %w", err)
	}
	return pick(idx, want)
}

// defaultVariant is the variant an image of the arch has when it names none.
var defaultVariant = map[string]string{"arm64": "v8", "arm": "v7"}

// Matches tells whether an image for have runs as want: same OS and architecture, and the same variant,
// an absent one read as the architecture's default (arm64: v8, arm: v7).
func Matches(have, want v1.Platform) bool {
	if have.OS != want.OS || have.Architecture != want.Architecture {
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

// pick chooses among the images of an index (nested ones included) the one for want. A lone image that
// names no platform is taken if its config agrees. Attestations (platform unknown/unknown) do not count.
func pick(idx v1.ImageIndex, want v1.Platform) (v1.Image, error) {
	all, err := tree.Images(idx)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	var images, match []tree.IndexImage
	var names []string
	for _, f := range all {
		p := f.Desc.Platform
		if p != nil && p.OS == "unknown" {
			continue
		}
		images = append(images, f)
		if p != nil {
			names = append(names, p.String())
		}
		if p != nil && Matches(*p, want) {
			match = append(match, f)
		}
	}
	var chosen tree.IndexImage
	switch {
	case len(match) == 1:
		chosen = match[0]
	case len(match) > 1:
		return nil, fmt.Errorf("%d images for %s", len(match), want)
	case len(images) == 1 && images[0].Desc.Platform == nil:
		chosen = images[0]
	case len(images) == 0:
		return nil, errors.New("no image in the index")
	default:
		return nil, fmt.Errorf("%w: it holds %s, the target needs %s", ErrPlatform, strings.Join(names, ", "), want)
	}
	img, err := chosen.Index.Image(chosen.Desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", chosen.Desc.Digest, err)
	}
	if chosen.Desc.Platform == nil {
		if err := checkPlatform(img, want); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// checkPlatform refuses an image whose config names another platform than want; one naming none passes.
func checkPlatform(img v1.Image, want v1.Platform) error {
	raw, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	if len(raw) > maxConfig {
		return fmt.Errorf("image config: %d bytes, more than %d", len(raw), maxConfig)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	have := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	if have.Architecture == "" {
		return nil
	}
	if have.OS == "" {
		have.OS = "linux"
	}
	if !Matches(have, want) {
		return fmt.Errorf("%w: the image is for %s, the target needs %s", ErrPlatform, have, want)
	}
	return nil
}

// MaxCredentialsBytes bounds a credentials file: one USER:PASSWORD line.
const MaxCredentialsBytes = 4 << 10
