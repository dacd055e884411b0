// Package source opens an update source (a hostos bundle, a root filesystem tar, an OCI image, an ext4
// image) as the root filesystem image the update engine writes into a slot.
package source

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/hostapp/fetch"
	"github.com/hostos/hostos/rootfs/tree"
)

// Payload is a root filesystem image on its way into a slot.
type Payload struct {
	// DeviceType, Arch and Version are what the source says it is for; "" when it does not say (a tar, an
	// OCI image, an ext4 image).
	DeviceType, Arch, Version string
	// Size is the byte size of the filesystem image, known before the first byte is read.
	Size int64
	// Image is the ext4 filesystem image, Size bytes. For a bundle, the reader verifies the hashes as it
	// goes: an error wrapping bundle.ErrCorrupt surfaces from Read at the latest in place of io.EOF, so
	// what was written is trusted only once Read returned io.EOF. Reads stop when Open's context is done.
	Image io.Reader
	// ImageSHA256, when set (a bundle), is the image's digest from the verified metadata, and the source
	// does NOT check Image against it: the consumer must compare the SHA-256 of the bytes it wrote
	// (read back) with it before trusting them. Empty: Image is checked by the source itself.
	ImageSHA256 string
	// ImageChunkSize and ImageChunksSHA256, when set, are the bundle's chunked digest of the image (see
	// hostapp/bundle), which a consumer may verify instead of ImageSHA256, on several cores.
	ImageChunkSize    int64
	ImageChunksSHA256 string
	// Signed is true for a bundle whose signature verified against Options.Keys.
	Signed bool
	// BaseVersion, set for a delta bundle, is the version of the running slot it was made against, and
	// Transferred the bytes of the delta, of the Size bytes it makes.
	BaseVersion string
	Transferred int64
	// Boot yields the new OS's boot files (slash-separated paths relative to the boot partition) once
	// Image was read to io.EOF. fn sees content before it is verified: it is trusted only when Boot
	// returns nil. Boot is nil when the source has no boot files. A bundle carries them; a container
	// image (OCI, docker save archive, registry) has them under /resin-boot, as balenaOS's hostapp
	// images do (see resinBoot).
	Boot func(fn func(name string, size int64, r io.Reader) error) error
	// Close releases the source: the connection, the file, the staging directory. Call it once done.
	Close func() error
}

// Options say what the target accepts and where to stage.
type Options struct {
	// Keys, when not empty, make a signed bundle the only acceptable source: an unsigned bundle, and any
	// other kind of source, is refused with an error wrapping bundle.ErrUnsigned; a signature none of
	// the keys verifies with one wrapping bundle.ErrBadSignature.
	Keys []ed25519.PublicKey
	// DeviceType is the target's device-type slug: a bundle for another one, or for another arch than the
	// registry gives it, is refused with ErrWrongDeviceType. It also picks the image of a multi-platform
	// OCI image. Empty accepts any.
	DeviceType string
	// RootSize is the size of the target slot in bytes; zero means the device type's root partition
	// size. A tar or OCI source is made into an ext4 image of this size, rounded down to 4 KiB; a bundle
	// or ext4 image larger than it is refused with ErrTooLarge before its payload is read.
	RootSize int64
	// TempDir is where a tar or OCI source is staged and made into an image (on a device: the data
	// partition); empty means os.TempDir(). A bundle is streamed and never stored.
	TempDir string
	// Fetch bounds every connection of an http(s) or registry source: connect, TLS handshake, response
	// headers, each wait for body bytes, retries (a dropped download resumes by range request when the
	// server shows it is the same object). Zero fields take hostapp/fetch's defaults.
	Fetch fetch.Options
	// RegistryAuth, when set, is the one credential sent to a registry (container.ParseCredentials reads
	// "USER:PASSWORD"); nil: the docker config's credentials for the registry, or anonymous.
	RegistryAuth authn.Authenticator
	// Base and BaseSize are the running slot (its partition's bytes), which a delta bundle is applied
	// to: its chunks are read from there, each checked. Without them a delta bundle is refused with
	// ErrNoBase.
	Base     io.ReaderAt
	BaseSize int64

	// Hostapp makes a container image source (OCI, docker save archive, registry) into a slot in
	// balenaOS's hostapp layout (rootfs/hostappfs) instead of a flat root filesystem, with update
	// counter HostappCounter (at least 1); any other source but a bundle or an ext4 image is then refused.
	Hostapp        bool
	HostappCounter int

	url string // the http(s) URL the source is read from: a chunked bundle's store is next to it
	// Progress, when set, is called with a step and bytes done of total (0 when unknown) while a
	// source is downloaded, staged or made into an image.
	Progress func(step string, done, total int64)
}

var (
	// ErrWrongDeviceType means the update is for another device type or arch than Options.DeviceType.
	ErrWrongDeviceType = errors.New("update is for another device type")
	// ErrTooLarge means the update's root filesystem does not fit the slot.
	ErrTooLarge = errors.New("update does not fit the slot")
)

const mib = 1 << 20

// Reference prefixes of registry images: "docker://registry/repo:tag", "oci://registry/repo@sha256:…".
const (
	prefixDocker = "docker://"
	prefixOCI    = "oci://"
)

// resolve checks the options and returns them with the defaults filled in.
func (o Options) resolve() (Options, error) {
	for i, k := range o.Keys {
		if len(k) != ed25519.PublicKeySize {
			return o, fmt.Errorf("update source: key %d is %d bytes, want %d", i, len(k), ed25519.PublicKeySize)
		}
	}
	if o.RootSize < 0 {
		return o, fmt.Errorf("update source: slot size %d: negative", o.RootSize)
	}
	if o.RootSize == 0 && o.DeviceType != "" {
		if dt, err := config.LookupDeviceType(o.DeviceType); err == nil {
			o.RootSize = int64(dt.Sizes.Root) * mib
		}
	}
	if o.Progress == nil {
		o.Progress = func(string, int64, int64) {}
	}
	return o, nil
}

// Open opens the update source ref: "-" (standard input), an http:// or https:// URL, a registry image
// "docker://registry/repo:tag" or "oci://registry/repo:tag" (also @digest), or else a local path. What
// a stream, a download or a file holds is told by its content, never by its name: a hostos bundle (a
// tar whose first member is hostos-bundle.json), a root filesystem tar (plain, gzip, xz or zstd), a
// docker save archive, an ext4 image; a local directory is an OCI image layout or a root filesystem
// tree. A path that is neither a regular file nor a directory (a pipe, a device) is read as a stream.
//
// A bundle is streamed: it is read once, front to back, while Payload.Image is read, and never stored.
// Its metadata is checked against opts before Open returns. Any other source is stored in
// opts.TempDir, staged with rootfs/tree (which refuses entries escaping the root: ".." paths, writes
// through symlinks) and made into an ext4 image of opts.RootSize bytes, which is then streamed;
// with opts.Keys set it is refused before anything is downloaded. What a source that is not a bundle
// brings is bounded by what the slot can take (see streamLimit), and its entries and bytes are counted
// against the slot's inodes and blocks before anything is staged: ErrTooLarge names the limit. A
// registry image is pulled with hostapp/container (opts.RegistryAuth or the docker config's
// credentials, https, http to loopback hosts only); of a multi-platform image, the one for the device
// type's arch is taken (the host's without a device type), and an image for another arch is refused
// with ErrWrongDeviceType naming both. Every connection is bounded by opts.Fetch.
//
// The context governs the whole payload: its reads stop when ctx is done. The caller closes the payload.
func Open(ctx context.Context, ref string, opts Options) (*Payload, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	switch {
	case ref == "":
		return nil, errors.New("update source: empty reference")
	case ref == "-":
		return openStream(ctx, "standard input", os.Stdin, func() error { return nil }, -1, o)
	case strings.HasPrefix(ref, "http://"), strings.HasPrefix(ref, "https://"):
		return openHTTP(ctx, ref, o)
	case strings.HasPrefix(ref, prefixDocker), strings.HasPrefix(ref, prefixOCI):
		return openRegistry(ctx, ref, o)
	}
	return openLocal(ctx, ref, o)
}

// openLocal opens a local path.
func openLocal(ctx context.Context, path string, o Options) (*Payload, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", path, err)
	}
	if fi.IsDir() {
		if err := refuseUnsigned(path, "directory", o); err != nil {
			return nil, err
		}
		kind, err := tree.Detect(path) // a tree or an OCI layout
		if err != nil {
			return nil, fmt.Errorf("update %s: %w", path, err)
		}
		return fromTree(ctx, path, path, kind, "", o)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return openStream(ctx, path, f, f.Close, -1, o)
	}
	head := make([]byte, tarBlock)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		f.Close()
		return nil, fmt.Errorf("update %s: %w", path, err)
	}
	if isBundle(head[:n]) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("update %s: %w", path, err)
		}
		return openBundle(ctx, path, f, f.Close, o)
	}
	f.Close()
	if err := refuseUnsigned(path, "file", o); err != nil {
		return nil, err
	}
	return fromFile(ctx, path, path, "", o)
}

// openHTTP streams a URL: a bundle is read as it arrives, anything else is downloaded first. The
// connection is bounded by o.Fetch: a server that stalls fails the update, one that drops it is resumed.
func openHTTP(ctx context.Context, ref string, o Options) (*Payload, error) {
	what := displayURL(ref)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ref, nil)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	client := &http.Client{Transport: fetch.NewTransport(o.Fetch)}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", what, scrubURLError(err))
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("update %s: HTTP %s", what, resp.Status)
	}
	o.url = ref
	return openStream(ctx, what, resp.Body, resp.Body.Close, resp.ContentLength, o)
}

// displayURL is a URL for messages: without credentials, query or fragment, which may hold secrets.
func displayURL(ref string) string {
	u, err := url.Parse(ref)
	if err != nil {
		return "URL"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment = nil, "", false, ""
	return u.String()
}

// scrubURLError drops the URL net/http puts into its errors, which may hold secrets.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// tarBlock is the size of a tar header block: enough to tell a bundle by its first member.
const tarBlock = 512

// isBundle tells a hostos bundle by its first tar header.
func isBundle(head []byte) bool {
	if len(head) < tarBlock {
		return false
	}
	h, err := tar.NewReader(bytes.NewReader(head[:tarBlock])).Next()
	return err == nil && h.Name == bundle.MetadataName
}

// openStream opens a source read once from r (size bytes, or -1 when unknown): a bundle is streamed, any
// other source downloaded into TempDir first. closeFn releases r.
func openStream(ctx context.Context, what string, r io.Reader, closeFn func() error, size int64, o Options) (*Payload, error) {
	// Read exactly the first header block, so that nothing past the metadata is read before it is checked.
	head := make([]byte, tarBlock)
	n, err := io.ReadFull(r, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		closeFn()
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	head = head[:n]
	r = io.MultiReader(bytes.NewReader(head), r)
	if isBundle(head) {
		return openBundle(ctx, what, r, closeFn, o)
	}
	if err := refuseUnsigned(what, "stream", o); err != nil {
		closeFn()
		return nil, err
	}
	if err := needSlotSize(what, o); err != nil {
		closeFn()
		return nil, err
	}
	limit := streamLimit(o.RootSize)
	if size > limit {
		closeFn()
		return nil, fmt.Errorf("update %s: %w: it is %d MiB, more than the %d MiB a slot of %d MiB can take",
			what, ErrTooLarge, ceilMiB(size), limit/mib, o.RootSize/mib)
	}
	work, err := os.MkdirTemp(o.TempDir, ".hostos-update-")
	if err != nil {
		closeFn()
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	dst := work + "/download"
	err = download(ctx, r, dst, size, limit, o.Progress)
	if cerr := closeFn(); err == nil {
		err = cerr
	}
	if err != nil {
		os.RemoveAll(work)
		if errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("update %s: %w", what, err)
		}
		return nil, fmt.Errorf("update %s: download: %w", what, err)
	}
	return fromFile(ctx, what, dst, work, o)
}

// streamLimit is the most a source that is not a bundle may bring for a slot of rootSize bytes: a tar
// of a tree that fits holds its data (at most the slot's size) plus a header of 512 bytes, and for
// long names or PAX records (xattrs) up to three more, per entry, and the slot has at most one inode
// per 8 KiB: headers are at most a quarter of the slot. Compression adds well under 1% to data it
// cannot compress; 16 MiB more covers archive trailers, image manifests and configs.
func streamLimit(rootSize int64) int64 { return rootSize + rootSize/4 + 16*mib }

// download copies r into the new file dst, at most limit bytes.
func download(ctx context.Context, r io.Reader, dst string, size, limit int64, progress func(string, int64, int64)) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	total := max(size, 0)
	cr := &countingReader{r: &ctxReader{ctx: ctx, r: io.LimitReader(r, limit+1)}, fn: func(done int64) { progress("download", done, total) }}
	_, err = io.CopyBuffer(f, cr, make([]byte, 1<<20))
	if err == nil && cr.n > limit {
		err = fmt.Errorf("%w: more than the %d MiB a slot of this size can take; stopped there", ErrTooLarge, limit/mib)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && size >= 0 && cr.n != size {
		err = fmt.Errorf("got %d bytes of %d", cr.n, size)
	}
	return err
}

// refuseUnsigned refuses a source that is not a bundle when keys are configured.
func refuseUnsigned(what, kind string, o Options) error {
	if len(o.Keys) == 0 {
		return nil
	}
	return fmt.Errorf("update %s: %w: a %s that is not a hostos bundle carries no signature, and signing keys are configured",
		what, bundle.ErrUnsigned, kind)
}

// openBundle reads a bundle's metadata from r and checks it against o; closeFn releases r.
func openBundle(ctx context.Context, what string, r io.Reader, closeFn func() error, o Options) (*Payload, error) {
	ropts := []bundle.ReadOption{bundle.CallerChecksImage()}
	if len(o.Keys) > 0 {
		ropts = append(ropts, bundle.WithKeys(o.Keys...))
	}
	// NewReader reads exactly up to the root filesystem payload: nothing of the payload is read before
	// the metadata passed. From there on, reads go through a buffer.
	src := &bufferLater{r: &ctxReader{ctx: ctx, r: r}}
	br, err := bundle.NewReader(src, ropts...)
	if err != nil {
		closeFn()
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	m := br.Metadata()
	if err := checkTarget(m, o); err != nil {
		closeFn()
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	if o.RootSize > 0 && m.Rootfs.ImageSize > o.RootSize {
		closeFn()
		return nil, fmt.Errorf("update %s: %w: its root filesystem is %d MiB, the slot %d MiB",
			what, ErrTooLarge, ceilMiB(m.Rootfs.ImageSize), o.RootSize/mib)
	}
	src.buffer()
	if m.Delta != nil {
		return openDelta(ctx, what, br, m, closeFn, o)
	}
	if m.Chunks != nil {
		return openChunked(ctx, what, br, m, closeFn, o)
	}
	img, err := br.Rootfs()
	if err != nil {
		closeFn()
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	p := &Payload{
		DeviceType: m.DeviceType, Arch: m.Arch, Version: m.Version, Size: m.Rootfs.ImageSize,
		Image: img, ImageSHA256: m.Rootfs.ImageSHA256, ImageChunkSize: m.Rootfs.ImageChunkSize,
		ImageChunksSHA256: m.Rootfs.ImageChunksSHA256, Signed: len(o.Keys) > 0, Close: onceClose(closeFn),
	}
	if m.Boot != nil {
		p.Boot = br.Boot
	}
	return p, nil
}

// checkTarget refuses a bundle for another device type than o's, or for another arch than the registry
// gives that device type.
func checkTarget(m bundle.Metadata, o Options) error {
	if o.DeviceType == "" {
		return nil
	}
	if m.DeviceType != o.DeviceType {
		return fmt.Errorf("%w: it is for %s (%s), this device is %s", ErrWrongDeviceType, m.DeviceType, m.Arch, o.DeviceType)
	}
	if dt, err := config.LookupDeviceType(o.DeviceType); err == nil && m.Arch != dt.Arch {
		return fmt.Errorf("%w: it is for %s on %s, and %s is %s", ErrWrongDeviceType, m.DeviceType, m.Arch, dt.Slug, dt.Arch)
	}
	return nil
}

func ceilMiB(n int64) int64 { return (n + mib - 1) / mib }

// onceClose makes a close function safe to call more than once.
func onceClose(fn func() error) func() error {
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { err = fn() })
		return err
	}
}

// ctxReader stops reading when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// bufferLater reads straight from r until buffer is called, and through a buffer from then on.
type bufferLater struct {
	r  io.Reader
	br *bufio.Reader
}

func (b *bufferLater) Read(p []byte) (int, error) {
	if b.br != nil {
		return b.br.Read(p)
	}
	return b.r.Read(p)
}

func (b *bufferLater) buffer() { b.br = bufio.NewReaderSize(b.r, 1<<20) }

// countingReader counts what it reads and reports the count, at most once per MiB.
type countingReader struct {
	r    io.Reader
	n    int64
	last int64
	fn   func(done int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n-c.last >= mib || (err != nil && c.n != c.last) {
		c.last = c.n
		c.fn(c.n)
	}
	return n, err
}
