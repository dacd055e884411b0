package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// FormatVersion is the bundle format of full bundles, which this package writes and reads.
const FormatVersion = 1

// DeltaFormatVersion is the bundle format of delta bundles (metadata "delta" set). Readers of format 1
// only refuse it as an unsupported format rather than misreading it.
const DeltaFormatVersion = 2

// Member names and payload values of the format.
const (
	MetadataName  = "hostos-bundle.json"
	SignatureName = "hostos-bundle.json.sig"

	// RootfsName and BootName are the payload names Create uses.
	RootfsName = "rootfs.ext4.zst"
	BootName   = "boot.tar"

	CompressionZstd = "zstd"
	CompressionNone = "none"
	// CompressionDelta marks a root filesystem member that is a hostos delta (hostapp/delta) of the
	// image against the base that metadata "delta" names.
	CompressionDelta = "delta"
	// DeltaName is the root filesystem member name of delta bundles.
	DeltaName = "rootfs.ext4.delta"
	// CompressionIndex marks a root filesystem member that is the chunk index (hostapp/delta's encoding)
	// of the image, whose chunks are files in the store metadata "chunks" names.
	CompressionIndex = "index"
	// IndexName is the root filesystem member name of chunked bundles, and ChunkStoreName the
	// directory next to the bundle that holds their chunks, one file per chunk named by its sha256.
	IndexName      = "rootfs.ext4.idx"
	ChunkStoreName = "chunks"

	FilesystemExt4 = "ext4"
)

// maxMetadataSize bounds the metadata member, which is read into memory.
const maxMetadataSize = 64 << 10

// Metadata describes a bundle; it is the first member, and what the signature covers.
type Metadata struct {
	Format     int      `json:"format"`     // FormatVersion
	DeviceType string   `json:"deviceType"` // device-type slug, e.g. "raspberrypi4-64"
	Arch       string   `json:"arch"`       // balena architecture, e.g. "aarch64"
	Version    string   `json:"version"`    // OS version
	Created    int64    `json:"created"`    // Unix seconds (SOURCE_DATE_EPOCH); also the members' mtime
	Rootfs     Payload  `json:"rootfs"`     // the root filesystem image
	Boot       *Payload `json:"boot,omitempty"`
	// Delta, set in a delta bundle (format DeltaFormatVersion) only, names the image the root
	// filesystem member applies to.
	Delta *Delta `json:"delta,omitempty"`
	// Chunks, set in a chunked bundle (format DeltaFormatVersion) only, says where the chunks of the
	// image the root filesystem member indexes are.
	Chunks *Chunks `json:"chunks,omitempty"`
}

// Chunks names the chunk store of a chunked bundle: a directory next to the bundle holding each chunk
// of the image as a file named by the chunk's sha256 in lower-case hex.
type Chunks struct {
	Store string `json:"store"` // a plain directory name, relative to the bundle's location
}

// Delta names the base image of a delta bundle and the chunk index of the new image.
type Delta struct {
	BaseSize    int64  `json:"baseSize"`    // bytes of the base image (a slot's filesystem)
	BaseSHA256  string `json:"baseSha256"`  // of the base image, its volume label cleared
	BaseVersion string `json:"baseVersion"` // OS version of the base, for messages
	IndexSHA256 string `json:"indexSha256"` // of the new image's chunk index as the delta member holds it
}

// Payload describes one payload member of a bundle.
type Payload struct {
	Name        string `json:"name"`                 // member name: "rootfs.ext4.zst", "boot.tar"
	Filesystem  string `json:"filesystem,omitempty"` // "ext4" for rootfs, empty for boot
	Compression string `json:"compression"`          // "zstd" or "none"
	Size        int64  `json:"size"`                 // stored (member) bytes
	SHA256      string `json:"sha256"`               // of the stored bytes, lower-case hex
	ImageSize   int64  `json:"imageSize"`            // bytes after decompression
	ImageSHA256 string `json:"imageSha256"`          // of the decompressed bytes, lower-case hex
	// ImageChunkSize and ImageChunksSHA256, optional, are a second digest of the decompressed bytes that
	// can be computed on several cores: the SHA-256 of the concatenated (raw, 32-byte) SHA-256 digests of
	// the image's consecutive ImageChunkSize-byte chunks, the last one shorter. Readers that write the
	// image somewhere may verify either digest.
	ImageChunkSize    int64  `json:"imageChunkSize,omitempty"`
	ImageChunksSHA256 string `json:"imageChunksSha256,omitempty"`
}

// DefaultImageChunkSize is the chunk size of the chunked image digest Create writes.
const DefaultImageChunkSize = 4 << 20

// validate checks m as this package writes and reads it. Its errors name the field.
func (m *Metadata) validate() error {
	if m.Format != FormatVersion && m.Format != DeltaFormatVersion {
		return fmt.Errorf("metadata format %d: unsupported, want %d or %d", m.Format, FormatVersion, DeltaFormatVersion)
	}
	isDelta := m.Format == DeltaFormatVersion
	delta, chunked := m.Delta != nil && m.Chunks == nil && m.Rootfs.Compression == CompressionDelta,
		m.Chunks != nil && m.Delta == nil && m.Rootfs.Compression == CompressionIndex
	plain := m.Delta == nil && m.Chunks == nil && m.Rootfs.Compression != CompressionDelta && m.Rootfs.Compression != CompressionIndex
	if isDelta && !(delta || chunked) || !isDelta && !plain {
		return fmt.Errorf("metadata format %d: format %d is a delta bundle (\"delta\", rootfs compression %q) or a chunked one (\"chunks\", rootfs compression %q), and only those",
			m.Format, DeltaFormatVersion, CompressionDelta, CompressionIndex)
	}
	if c := m.Chunks; c != nil {
		if err := checkMemberName(c.Store); err != nil {
			return fmt.Errorf("metadata chunks store %q: %w", c.Store, err)
		}
	}
	if d := m.Delta; d != nil {
		if d.BaseSize <= 0 || !isDigest(d.BaseSHA256) || !isDigest(d.IndexSHA256) {
			return fmt.Errorf("metadata delta: base size %d, base sha256 %q, index sha256 %q: want a positive size and 64 lower-case hex digits",
				d.BaseSize, d.BaseSHA256, d.IndexSHA256)
		}
		if err := checkText(d.BaseVersion); err != nil {
			return fmt.Errorf("metadata delta baseVersion %q: %w", d.BaseVersion, err)
		}
	}
	for _, f := range []struct{ name, v string }{{"deviceType", m.DeviceType}, {"arch", m.Arch}, {"version", m.Version}} {
		if err := checkText(f.v); err != nil {
			return fmt.Errorf("metadata %s %q: %w", f.name, f.v, err)
		}
	}
	if m.Created < 0 {
		return fmt.Errorf("metadata created %d: negative", m.Created)
	}
	if err := m.Rootfs.validate(); err != nil {
		return fmt.Errorf("metadata rootfs: %w", err)
	}
	if m.Rootfs.Filesystem != FilesystemExt4 {
		return fmt.Errorf("metadata rootfs filesystem %q: want %q", m.Rootfs.Filesystem, FilesystemExt4)
	}
	if m.Boot != nil {
		if err := m.Boot.validate(); err != nil {
			return fmt.Errorf("metadata boot: %w", err)
		}
		if m.Boot.Compression == CompressionDelta || m.Boot.Compression == CompressionIndex {
			return fmt.Errorf("metadata boot compression %q: for the root filesystem only", m.Boot.Compression)
		}
		if m.Boot.Filesystem != "" {
			return fmt.Errorf("metadata boot filesystem %q: want none", m.Boot.Filesystem)
		}
		if m.Boot.Name == m.Rootfs.Name {
			return fmt.Errorf("metadata boot name %q: same as rootfs", m.Boot.Name)
		}
	}
	return nil
}

func (p *Payload) validate() error {
	if err := checkMemberName(p.Name); err != nil {
		return fmt.Errorf("name %q: %w", p.Name, err)
	}
	switch p.Compression {
	case CompressionZstd, CompressionNone, CompressionDelta, CompressionIndex:
	default:
		return fmt.Errorf("compression %q: want %q, %q, %q or %q", p.Compression, CompressionZstd, CompressionNone, CompressionDelta, CompressionIndex)
	}
	if p.Size < 0 || p.ImageSize < 0 {
		return fmt.Errorf("size %d, image size %d: negative", p.Size, p.ImageSize)
	}
	if !isDigest(p.SHA256) {
		return fmt.Errorf("sha256 %q: want 64 lower-case hex digits", p.SHA256)
	}
	if !isDigest(p.ImageSHA256) {
		return fmt.Errorf("image sha256 %q: want 64 lower-case hex digits", p.ImageSHA256)
	}
	if (p.ImageChunkSize == 0) != (p.ImageChunksSHA256 == "") || p.ImageChunkSize < 0 ||
		p.ImageChunkSize > 0 && (p.ImageChunkSize%4096 != 0 || !isDigest(p.ImageChunksSHA256)) {
		return fmt.Errorf("image chunk digest: chunk size %d with digest %q: want a multiple of 4096 and 64 lower-case hex digits, or neither", p.ImageChunkSize, p.ImageChunksSHA256)
	}
	if p.Compression == CompressionNone && (p.Size != p.ImageSize || p.SHA256 != p.ImageSHA256) {
		return errors.New("uncompressed payload: stored and image size and sha256 differ")
	}
	return nil
}

// checkText accepts a non-empty string of printable ASCII.
func checkText(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return errors.New("not printable ASCII")
		}
	}
	return nil
}

// checkMemberName accepts a plain file name that fits a ustar name field and is not a metadata member.
func checkMemberName(s string) error {
	if err := checkText(s); err != nil {
		return err
	}
	switch {
	case len(s) > 100:
		return errors.New("longer than 100 bytes")
	case s == "." || s == ".." || strings.ContainsAny(s, `/\`):
		return errors.New("not a plain file name")
	case s == MetadataName || s == SignatureName:
		return errors.New("reserved")
	}
	return nil
}

func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// encode returns the canonical JSON of m: keys sorted, no whitespace, no HTML escaping.
func (m *Metadata) encode() ([]byte, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	// Struct fields marshal in declaration order; a generic value marshals objects with sorted keys.
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// errUnsupported marks a well-formed bundle of another format version.
var errUnsupported = errors.New("unsupported bundle format")

// decodeMetadata parses and validates metadata bytes. A format other than FormatVersion gives an error
// wrapping errUnsupported; anything else wrong is a plain error the reader reports as corruption.
func decodeMetadata(b []byte) (Metadata, error) {
	var probe struct {
		Format *int `json:"format"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return Metadata{}, fmt.Errorf("metadata: %w", err)
	}
	if probe.Format == nil {
		return Metadata{}, errors.New("metadata: no format")
	}
	if *probe.Format != FormatVersion && *probe.Format != DeltaFormatVersion {
		return Metadata{}, fmt.Errorf("%w %d, want %d or %d", errUnsupported, *probe.Format, FormatVersion, DeltaFormatVersion)
	}
	if err := checkKeys(b); err != nil {
		return Metadata{}, fmt.Errorf("metadata: %w", err)
	}
	var m Metadata
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		return Metadata{}, fmt.Errorf("metadata: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return Metadata{}, errors.New("metadata: data after the JSON object")
	}
	if err := m.validate(); err != nil {
		return Metadata{}, err
	}
	return m, nil
}

// metadataKeys are the object keys the format knows, spelt exactly.
var metadataKeys = map[string]bool{
	"format": true, "deviceType": true, "arch": true, "version": true, "created": true, "rootfs": true, "boot": true,
	"name": true, "filesystem": true, "compression": true, "size": true, "sha256": true, "imageSize": true,
	"imageSha256": true, "imageChunkSize": true, "imageChunksSha256": true,
	"chunks": true, "store": true, "delta": true, "baseSize": true, "baseSha256": true, "baseVersion": true, "indexSha256": true,
}

// checkKeys rejects duplicate keys and keys not spelt exactly as the format does, which encoding/json
// would otherwise resolve (last wins, case-insensitive match) where another reader might not.
func checkKeys(b []byte) error {
	type frame struct {
		obj, wantKey bool
		seen         map[string]bool
	}
	var stack []*frame
	d := json.NewDecoder(bytes.NewReader(b))
	for {
		t, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n := len(stack); n > 0 && stack[n-1].wantKey {
			if k, ok := t.(string); ok {
				top := stack[n-1]
				if !metadataKeys[k] {
					return fmt.Errorf("unknown key %q", k)
				}
				if top.seen[k] {
					return fmt.Errorf("duplicate key %q", k)
				}
				top.seen[k] = true
				top.wantKey = false
				continue
			}
		}
		switch t {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, wantKey: true, seen: map[string]bool{}})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: the enclosing object wants a key next.
		if n := len(stack); n > 0 && stack[n-1].obj {
			stack[n-1].wantKey = true
		}
	}
}
