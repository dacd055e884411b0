package bundle

import (
	"archive/tar"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"strings"

	"github.com/klauspost/compress/zstd"
)

var (
	// ErrUnsigned means keys were given but the bundle carries no signature.
	ErrUnsigned = errors.New("bundle is not signed")
	// ErrBadSignature means the signature verifies with none of the keys given.
	ErrBadSignature = errors.New("bundle signature does not verify")
	// ErrCorrupt means the bundle is damaged: a wrong size or digest, a truncation, a bad structure.
	ErrCorrupt = errors.New("corrupt bundle")
)

// maxWindow bounds the zstd window a reader accepts, and with it the memory a payload can make it hold.
const maxWindow = 128 << 20

// ReadOption configures NewReader.
type ReadOption func(*readOptions)

type readOptions struct {
	keys         []ed25519.PublicKey
	keysSet      bool
	verifyStored bool
	callerImage  bool
}

// CallerChecksImage makes Rootfs leave the decompressed image's digest to the caller, who must compare
// the SHA-256 of what it wrote with Metadata().Rootfs.ImageSHA256 before trusting it. The updater does:
// it hashes the slot as read back after writing, which checks the payload and the write in one pass.
// Sizes, and the stored digest when VerifyStored is given, are still checked.
func CallerChecksImage() ReadOption { return func(o *readOptions) { o.callerImage = true } }

// VerifyStored makes Rootfs check the stored (compressed) digest of the root filesystem too, which it
// otherwise leaves for the decompressed image's digest to cover.
func VerifyStored() ReadOption { return func(o *readOptions) { o.verifyStored = true } }

// WithKeys makes a signature required: NewReader fails with ErrUnsigned when the bundle has none and
// with ErrBadSignature when none of keys verifies it. Giving WithKeys no key at all is an error, so that
// an empty key list cannot turn verification off.
func WithKeys(keys ...ed25519.PublicKey) ReadOption {
	return func(o *readOptions) {
		o.keys = append(o.keys, keys...)
		o.keysSet = true
	}
}

func (o *readOptions) check() error {
	if o.keysSet && len(o.keys) == 0 {
		return errors.New("bundle reader: WithKeys given no keys")
	}
	for i, k := range o.keys {
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("bundle reader: key %d is %d bytes, want %d", i, len(k), ed25519.PublicKeySize)
		}
	}
	return nil
}

type readState int

const (
	atRootfs readState = iota // NewReader read the rootfs member's header
	inRootfs                  // Rootfs handed out its reader
	atBoot                    // rootfs verified; the boot member (if any) comes next
	inBoot                    // Boot is running
	atEnd                     // everything read and verified, end of archive seen
)

// Reader reads a bundle from a stream, front to back, without storing it. Its methods are called in
// stream order: NewReader, Rootfs (read to io.EOF), Boot.
type Reader struct {
	src   *source
	tr    *tar.Reader
	meta  Metadata
	state readState
	err   error // sticky: once failed, every later call returns it

	verifyStored bool
	callerImage  bool
}

// source counts what the tar reader consumed and remembers the stream's own read errors, so that they
// are told apart from a damaged bundle.
type source struct {
	r   io.Reader
	n   int64
	err error
}

func (s *source) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF && s.err == nil {
		s.err = err
	}
	return n, err
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// fail records the reader's first failure: err as is when it already says corrupt, the stream's own
// error when reading the stream failed, and otherwise err as corruption of what.
func (r *Reader) fail(what string, err error) error {
	switch {
	case errors.Is(err, ErrCorrupt):
	case r.src.err != nil:
		err = fmt.Errorf("read bundle %s: %w", what, r.src.err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = corrupt("%s: truncated: %w", what, err)
	default:
		err = corrupt("%s: %w", what, err)
	}
	if r.err == nil {
		r.err = err
	}
	return r.err
}

// NewReader reads the metadata and signature from the start of a bundle stream and checks them: the
// signature against the keys of WithKeys, the metadata against the format. It reads up to the root
// filesystem payload.
func NewReader(rd io.Reader, opts ...ReadOption) (*Reader, error) {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	r := &Reader{src: &source{r: rd}, verifyStored: o.verifyStored, callerImage: o.callerImage}
	r.tr = tar.NewReader(r.src)

	hdr, err := r.next("no " + MetadataName + " member")
	if err != nil {
		return nil, err
	}
	if err := checkHeader(hdr, MetadataName, -1); err != nil {
		return nil, err
	}
	if hdr.Size > maxMetadataSize {
		return nil, corrupt("member %s: %d bytes, more than %d", MetadataName, hdr.Size, maxMetadataSize)
	}
	meta, err := r.readMember(hdr)
	if err != nil {
		return nil, err
	}

	hdr, err = r.next("no rootfs member")
	if err != nil {
		return nil, err
	}
	var sig []byte
	if hdr.Name == SignatureName {
		if err := checkHeader(hdr, SignatureName, ed25519.SignatureSize); err != nil {
			return nil, err
		}
		if sig, err = r.readMember(hdr); err != nil {
			return nil, err
		}
		if hdr, err = r.next("no rootfs member"); err != nil {
			return nil, err
		}
	}
	if len(o.keys) > 0 {
		if sig == nil {
			return nil, fmt.Errorf("%w: no %s member", ErrUnsigned, SignatureName)
		}
		if !verify(o.keys, meta, sig) {
			return nil, fmt.Errorf("%w with any of the %d keys given", ErrBadSignature, len(o.keys))
		}
	}

	m, err := decodeMetadata(meta)
	if errors.Is(err, errUnsupported) {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	if err != nil {
		return nil, corrupt("%w", err)
	}
	if err := checkHeader(hdr, m.Rootfs.Name, m.Rootfs.Size); err != nil {
		return nil, err
	}
	r.meta = m
	return r, nil
}

func verify(keys []ed25519.PublicKey, msg, sig []byte) bool {
	for _, k := range keys {
		if ed25519.Verify(k, msg, sig) {
			return true
		}
	}
	return false
}

// next reads the next member header; the end of the archive there is corruption described by missing.
func (r *Reader) next(missing string) (*tar.Header, error) {
	hdr, err := r.tr.Next()
	if err == io.EOF {
		return nil, r.fail("archive", errors.New(missing))
	}
	if err != nil {
		return nil, r.fail("archive", err)
	}
	return hdr, nil
}

// checkHeader accepts a regular file member called name, of size bytes unless size is negative.
func checkHeader(hdr *tar.Header, name string, size int64) error {
	switch {
	case hdr.Name != name:
		return corrupt("member %q where %q belongs", hdr.Name, name)
	case hdr.Typeflag != tar.TypeReg:
		return corrupt("member %q: type %q, want a regular file", hdr.Name, hdr.Typeflag)
	case size >= 0 && hdr.Size != size:
		return corrupt("member %q: %d bytes, want %d", hdr.Name, hdr.Size, size)
	}
	return nil
}

// readMember reads a small member whole.
func (r *Reader) readMember(hdr *tar.Header) ([]byte, error) {
	b := make([]byte, hdr.Size)
	if _, err := io.ReadFull(r.tr, b); err != nil {
		return nil, r.fail("member "+hdr.Name, err)
	}
	return b, nil
}

// Metadata returns the bundle's metadata, checked against the format and, with WithKeys, the signature.
func (r *Reader) Metadata() Metadata {
	m := r.meta
	if m.Boot != nil {
		b := *m.Boot
		m.Boot = &b
	}
	return m
}

// Rootfs returns the decompressed root filesystem image as a stream. It checks the stored bytes against
// Size and SHA256 and the decompressed ones against ImageSize and ImageSHA256; a mismatch, a truncation
// or a malformed payload is an error wrapping ErrCorrupt from Read, at the latest in place of io.EOF.
// When the bundle has no boot member, the end of the archive is checked before io.EOF, too. So callers
// read it to io.EOF before they trust what they wrote. Rootfs can be called once.
//
// Of a delta bundle (Metadata().Delta set), Rootfs yields the member as stored, a hostos delta
// (hostapp/delta), checked against Size and SHA256; whoever applies it checks the image it makes
// against ImageSize and ImageSHA256. Of a chunked bundle (Metadata().Chunks set), likewise, the chunk
// index as stored.
func (r *Reader) Rootfs() (io.Reader, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.state != atRootfs {
		return nil, errors.New("bundle rootfs: already read")
	}
	r.state = inRootfs
	pr, err := r.payload(rootfsWhat, r.meta.Rootfs, r.meta.Boot == nil)
	if err != nil {
		return nil, err
	}
	return pr, nil
}

// Boot calls fn for each regular file of the boot member, in archive order, with its slash-separated path
// relative to the boot partition root, its size and its content. Call it once the reader of Rootfs has
// returned io.EOF. Paths are checked (relative, no "..", no duplicates, no file where a directory is) and
// entries other than files and directories are refused, both as corruption.
//
// The member's sizes and digests can only be checked once it has been read, so fn sees content before it
// is verified: callers stage the files and use them only when Boot returns nil. An error of fn ends Boot
// and is returned wrapped. Boot on a bundle without boot member returns nil without calling fn.
func (r *Reader) Boot(fn func(name string, size int64, rd io.Reader) error) error {
	if r.err != nil {
		return r.err
	}
	switch {
	case r.state == atRootfs || r.state == inRootfs:
		return errors.New("bundle boot files: the rootfs must be read to its end first")
	case r.meta.Boot == nil && r.state == atEnd:
		return nil
	case r.state != atBoot:
		return errors.New("bundle boot files: already read")
	}
	r.state = inBoot
	b := *r.meta.Boot
	hdr, err := r.next("no boot member " + b.Name)
	if err != nil {
		return err
	}
	if err := checkHeader(hdr, b.Name, b.Size); err != nil {
		return r.fail("boot member", err)
	}
	pr, err := r.payload("boot member", b, true)
	if err != nil {
		return err
	}
	tr := tar.NewReader(pr)
	seen := paths{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return r.fail("boot member", err)
		}
		name, dir, err := bootEntry(h)
		if err == nil && name != "" {
			err = seen.add(name, dir)
		}
		if err != nil {
			return r.fail("boot member", err)
		}
		if dir {
			continue
		}
		if err := fn(name, h.Size, tr); err != nil {
			if r.err != nil {
				return r.err // the payload failed under fn
			}
			r.err = fmt.Errorf("boot file %s: %w", name, err)
			return r.err
		}
	}
	// Read what follows the inner archive's end, so that the digests and the outer end get checked.
	if _, err := io.Copy(io.Discard, pr); err != nil {
		return err
	}
	return nil
}

// bootEntry checks a boot tar entry and returns its clean path ("" for the root directory).
func bootEntry(h *tar.Header) (name string, dir bool, err error) {
	switch h.Typeflag {
	case tar.TypeReg:
	case tar.TypeDir:
		dir = true
	default:
		return "", false, fmt.Errorf("entry %q: type %q, want a regular file or directory", h.Name, h.Typeflag)
	}
	name = strings.TrimPrefix(h.Name, "./")
	if dir {
		name = strings.TrimSuffix(name, "/")
		if name == "" || name == "." {
			return "", true, nil
		}
	}
	if name == "." || !fs.ValidPath(name) || strings.ContainsAny(name, "\\\x00") {
		return "", false, fmt.Errorf("entry %q: not a relative path inside the boot partition", h.Name)
	}
	return name, dir, nil
}

// paths records the boot entries seen: true for a directory.
type paths map[string]bool

func (s paths) add(name string, dir bool) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		parent := name[:i]
		if isDir, ok := s[parent]; ok && !isDir {
			return fmt.Errorf("entry %q: %q is a file", name, parent)
		}
		s[parent] = true
	}
	if isDir, ok := s[name]; ok && !(isDir && dir) {
		return fmt.Errorf("entry %q: duplicate", name)
	}
	s[name] = dir
	return nil
}

// payloadReader streams one payload member, decompressed, and verifies it at its end.
type payloadReader struct {
	r      *Reader
	what   string
	p      Payload
	last   bool // the last member: check the end of the archive after it
	stored hashingReader
	out    io.Reader
	zd     *zstd.Decoder
	image  *asyncHash // nil when uncompressed: the stored digest covers the image
	n      int64
	err    error
}

type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if h.h != nil {
		h.h.Write(p[:n])
	}
	h.n += int64(n)
	return n, err
}

const rootfsWhat = "rootfs member"

func (r *Reader) payload(what string, p Payload, last bool) (*payloadReader, error) {
	pr := &payloadReader{r: r, what: what, p: p, last: last}
	pr.stored = hashingReader{r: r.tr}
	// The digest that matters is the one of the bytes used: the decompressed image. A compressed root
	// filesystem is verified by that digest alone (the signature covers it), which halves the hashing
	// of the largest member; its stored digest is for tools that check a bundle without decompressing
	// it (hostos bundle inspect --verify). Everything else is checked both ways.
	if p.Compression != CompressionZstd || what != rootfsWhat || r.verifyStored {
		pr.stored.h = sha256.New()
	}
	pr.out = &pr.stored
	if p.Compression == CompressionZstd {
		// zstd's own frame checksum is left unchecked: the image digest covers the same bytes.
		zd, err := zstd.NewReader(&pr.stored, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxWindow), zstd.IgnoreChecksum(true),
			zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, r.fail(what, err)
		}
		pr.zd, pr.out = zd, zd
		if !(what == rootfsWhat && r.callerImage) {
			pr.image = newAsyncHash(sha256.New())
		}
	}
	return pr, nil
}

func (p *payloadReader) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.out.Read(b)
	if p.image != nil {
		p.image.Write(b[:n])
	}
	p.n += int64(n)
	switch {
	case err != nil && err != io.EOF:
	case p.n > p.outSize():
		err = corrupt("%s: more than the %d bytes metadata says", p.what, p.outSize())
	case err == io.EOF:
		if err = p.finish(); err == nil {
			p.err = io.EOF
			return n, io.EOF
		}
	}
	if err != nil {
		p.close()
		p.err = p.r.fail(p.what, err)
		return n, p.err
	}
	return n, nil
}

// finish checks a payload read to its end and, after the last one, the end of the archive.
func (p *payloadReader) finish() error {
	if p.zd != nil {
		p.close()
		// The member ends with the last zstd frame.
		if k, err := io.Copy(io.Discard, &p.stored); err != nil {
			return err
		} else if k > 0 {
			return corrupt("%s: %d bytes after the zstd stream", p.what, k)
		}
	}
	if p.stored.n != p.p.Size {
		return corrupt("%s: %d bytes, metadata says %d", p.what, p.stored.n, p.p.Size)
	}
	if p.stored.h != nil {
		if sum := hex.EncodeToString(p.stored.h.Sum(nil)); sum != p.p.SHA256 {
			return corrupt("%s: sha256 %s, metadata says %s", p.what, sum, p.p.SHA256)
		}
	}
	if p.n != p.outSize() {
		return corrupt("%s: image is %d bytes, metadata says %d", p.what, p.n, p.outSize())
	}
	if p.image != nil {
		if sum := hex.EncodeToString(p.image.Sum(nil)); sum != p.p.ImageSHA256 {
			return corrupt("%s: image sha256 %s, metadata says %s", p.what, sum, p.p.ImageSHA256)
		}
	}
	if p.last {
		return p.r.end()
	}
	p.r.state = atBoot
	return nil
}

// outSize is the number of bytes the payload yields: the image's, or a delta's stored bytes.
func (p *payloadReader) outSize() int64 {
	if p.p.Compression == CompressionDelta || p.p.Compression == CompressionIndex {
		return p.p.Size
	}
	return p.p.ImageSize
}

func (p *payloadReader) close() {
	if p.zd != nil {
		p.zd.Close()
	}
	if p.image != nil {
		p.image.stop()
	}
}

// end checks that the archive ends right after the last payload, with its end-of-archive marker.
func (r *Reader) end() error {
	want := (r.src.n+511)/512*512 + 1024
	hdr, err := r.tr.Next()
	switch {
	case err == nil:
		return corrupt("member %q after the last payload", hdr.Name)
	case err != io.EOF:
		return r.fail("archive end", err)
	case r.src.n != want:
		return corrupt("archive ends without its end-of-archive marker")
	}
	r.state = atEnd
	return nil
}
