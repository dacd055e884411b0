package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

const testCreated = 1700000000

// fixture holds the payloads of a small bundle, stored as Write takes them.
type fixture struct {
	m      Metadata
	image  []byte
	rootfs []byte
	boot   []byte // nil: no boot member
	files  map[string]string
}

// testImage returns n bytes that compress somewhat: random runs between zeros and text.
func testImage(n int, seed uint64) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed)}))
	b := make([]byte, n)
	for off := 0; off < n; off += 64 << 10 {
		k := min(n-off, 8<<10)
		for i := range k {
			b[off+i] = byte(r.Uint32())
		}
		copy(b[min(n, off+16<<10):], strings.Repeat("ext4 text ", 1000))
	}
	return b
}

func compressed(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, err := newEncoder(&out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// smallWindowed returns a fixture whose rootfs is a 64 KiB image compressed with a 64 KiB window, which
// a reader decodes without allocating an 8 MiB history: for tests that read thousands of bundles.
func smallWindowed(t testing.TB, withBoot bool) *fixture {
	t.Helper()
	f := newFixture(t, withBoot)
	f.image = f.image[:64<<10]
	var out bytes.Buffer
	zw, err := zstd.NewWriter(&out, zstd.WithWindowSize(64<<10), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(f.image)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.rootfs = out.Bytes()
	f.m.Rootfs.Size, f.m.Rootfs.SHA256 = int64(len(f.rootfs)), digest(f.rootfs)
	f.m.Rootfs.ImageSize, f.m.Rootfs.ImageSHA256 = int64(len(f.image)), digest(f.image)
	return f
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// entry is one member of a tar made by makeTar.
type entry struct {
	name string
	body string
	typ  byte // tar.TypeReg when 0
}

func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), ModTime: time.Unix(testCreated, 0)}
		switch e.typ {
		case 0:
			h.Typeflag = tar.TypeReg
		case tar.TypeDir:
			h.Mode, h.Size = 0o755, 0
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname, h.Size = e.body, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

var testBootEntries = []entry{
	{name: "config.json", body: `{"deviceType":"raspberrypi4-64","persistentLogging":false}`},
	{name: "overlays/", typ: tar.TypeDir},
	{name: "overlays/x.dtbo", body: strings.Repeat("dtbo", 300)},
	{name: "os-release", body: "ID=balena-os\n"},
	{name: "empty", body: ""},
}

func testBootFiles() map[string]string {
	files := map[string]string{}
	for _, e := range testBootEntries {
		if e.typ == 0 {
			files[e.name] = e.body
		}
	}
	return files
}

func newFixture(t testing.TB, withBoot bool) *fixture {
	t.Helper()
	f := &fixture{image: testImage(300<<10, 1)}
	f.rootfs = compressed(t, f.image)
	f.m = Metadata{Format: FormatVersion, DeviceType: "raspberrypi4-64", Arch: "aarch64", Version: "6.0.13+rev1",
		Created: testCreated, Rootfs: Payload{Name: RootfsName, Filesystem: FilesystemExt4, Compression: CompressionZstd,
			Size: int64(len(f.rootfs)), SHA256: digest(f.rootfs), ImageSize: int64(len(f.image)), ImageSHA256: digest(f.image)}}
	if withBoot {
		f.setBoot(makeTar(t, testBootEntries...))
		f.files = testBootFiles()
	}
	return f
}

// setBoot makes b the (uncompressed) boot payload.
func (f *fixture) setBoot(b []byte) {
	f.boot = b
	f.m.Boot = &Payload{Name: BootName, Compression: CompressionNone, Size: int64(len(b)), SHA256: digest(b),
		ImageSize: int64(len(b)), ImageSHA256: digest(b)}
}

func (f *fixture) write(t testing.TB, key ed25519.PrivateKey) []byte {
	t.Helper()
	var out bytes.Buffer
	var boot io.Reader
	if f.boot != nil {
		boot = bytes.NewReader(f.boot)
	}
	if err := Write(&out, f.m, bytes.NewReader(f.rootfs), boot, key); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// readResult is what readAll got out of a bundle.
type readResult struct {
	m     Metadata
	image string // sha256
	size  int64
	files map[string]string
}

// readAll reads a whole bundle as an updater would and returns the first error.
func readAll(b []byte, opts ...ReadOption) (readResult, error) {
	return readFrom(bytes.NewReader(b), opts...)
}

func readFrom(src io.Reader, opts ...ReadOption) (readResult, error) {
	var res readResult
	r, err := NewReader(src, opts...)
	if err != nil {
		return res, err
	}
	res.m = r.Metadata()
	rd, err := r.Rootfs()
	if err != nil {
		return res, err
	}
	h := sha256.New()
	if res.size, err = io.Copy(h, rd); err != nil {
		return res, err
	}
	res.image = hex.EncodeToString(h.Sum(nil))
	res.files = map[string]string{}
	err = r.Boot(func(name string, size int64, rd io.Reader) error {
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		if int64(len(b)) != size {
			return fmt.Errorf("%s: read %d bytes, size %d", name, len(b), size)
		}
		res.files[name] = string(b)
		return nil
	})
	return res, err
}

func testKey(t testing.TB, seed byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

func TestRoundTrip(t *testing.T) {
	pub, priv := testKey(t, 1)
	other, _ := testKey(t, 2)
	for _, tc := range []struct {
		name   string
		boot   bool
		key    ed25519.PrivateKey
		opts   []ReadOption
		noBoot bool
	}{
		{name: "unsigned"},
		{name: "unsigned with boot", boot: true},
		{name: "signed, not verified", boot: true, key: priv},
		{name: "signed, verified", boot: true, key: priv, opts: []ReadOption{WithKeys(pub)}},
		{name: "signed, second key verifies", key: priv, opts: []ReadOption{WithKeys(other, pub)}},
		{name: "signed, keys in two options", key: priv, opts: []ReadOption{WithKeys(other), WithKeys(pub)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.boot)
			res, err := readAll(f.write(t, tc.key), tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.m, f.m) {
				t.Errorf("metadata %+v, want %+v", res.m, f.m)
			}
			if res.image != digest(f.image) || res.size != int64(len(f.image)) {
				t.Errorf("image %d bytes %s, want %d %s", res.size, res.image, len(f.image), digest(f.image))
			}
			want := f.files
			if want == nil {
				want = map[string]string{}
			}
			if !maps.Equal(res.files, want) {
				t.Errorf("boot files %v, want %v", slices.Sorted(maps.Keys(res.files)), slices.Sorted(maps.Keys(want)))
			}
		})
	}
}

func TestUncompressedRootfs(t *testing.T) {
	f := newFixture(t, true)
	f.rootfs = f.image
	f.m.Rootfs.Compression = CompressionNone
	f.m.Rootfs.Size, f.m.Rootfs.SHA256 = f.m.Rootfs.ImageSize, f.m.Rootfs.ImageSHA256
	res, err := readAll(f.write(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.image != digest(f.image) {
		t.Error("image differs")
	}
}

func TestCompressedBoot(t *testing.T) {
	f := newFixture(t, false)
	raw := makeTar(t, testBootEntries...)
	f.boot = compressed(t, raw)
	f.m.Boot = &Payload{Name: "boot.tar.zst", Compression: CompressionZstd, Size: int64(len(f.boot)), SHA256: digest(f.boot),
		ImageSize: int64(len(raw)), ImageSHA256: digest(raw)}
	res, err := readAll(f.write(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(res.files, testBootFiles()) {
		t.Errorf("boot files %v", res.files)
	}
}

func TestMetadataCanonical(t *testing.T) {
	f := newFixture(t, true)
	f.m.Version = `6.0 <&> "q" \ x`
	spans := memberSpans(t, f.write(t, nil))
	got := spans[MetadataName].data
	want := `{"arch":"aarch64","boot":{"compression":"none","imageSha256":"` + f.m.Boot.ImageSHA256 + `","imageSize":` +
		fmt.Sprint(f.m.Boot.ImageSize) + `,"name":"boot.tar","sha256":"` + f.m.Boot.SHA256 + `","size":` + fmt.Sprint(f.m.Boot.Size) +
		`},"created":1700000000,"deviceType":"raspberrypi4-64","format":1,"rootfs":{"compression":"zstd","filesystem":"ext4",` +
		`"imageSha256":"` + f.m.Rootfs.ImageSHA256 + `","imageSize":307200,"name":"rootfs.ext4.zst","sha256":"` + f.m.Rootfs.SHA256 +
		`","size":` + fmt.Sprint(f.m.Rootfs.Size) + `},"version":"6.0 <&> \"q\" \\ x"}`
	if string(got) != want {
		t.Errorf("metadata\n%s\nwant\n%s", got, want)
	}
}

func TestDecodeMetadata(t *testing.T) {
	f := newFixture(t, false)
	good, err := f.m.encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeMetadata(good); err != nil {
		t.Fatal(err)
	}
	// Whitespace is allowed: the signature covers the bytes as stored.
	spaced := bytes.ReplaceAll(good, []byte(`,"`), []byte(",\n  \""))
	if _, err := decodeMetadata(spaced); err != nil {
		t.Errorf("spaced metadata: %v", err)
	}
	s := string(good)
	for _, tc := range []struct{ name, in string }{
		{"unknown key", strings.Replace(s, `"arch"`, `"extra":1,"arch"`, 1)},
		{"unknown payload key", strings.Replace(s, `"compression"`, `"extra":1,"compression"`, 1)},
		{"key in other case", strings.Replace(s, `"arch"`, `"Arch"`, 1)},
		{"duplicate key", strings.Replace(s, `"arch":"aarch64"`, `"arch":"aarch64","arch":"amd64"`, 1)},
		{"trailing data", s + "{}"},
		{"no format", strings.Replace(s, `"format":1,`, ``, 1)},
		{"empty arch", strings.Replace(s, `"aarch64"`, `""`, 1)},
		{"control character", strings.Replace(s, `"aarch64"`, `"a\u0001"`, 1)},
		{"bad digest", strings.Replace(s, f.m.Rootfs.SHA256, strings.ToUpper(f.m.Rootfs.SHA256), 1)},
		{"bad compression", strings.Replace(s, `"zstd"`, `"xz"`, 1)},
		{"rootfs not ext4", strings.Replace(s, `"ext4"`, `"btrfs"`, 1)},
		{"member name with slash", strings.Replace(s, RootfsName, "a/b", 1)},
		{"reserved member name", strings.Replace(s, RootfsName, SignatureName, 1)},
		{"negative size", strings.Replace(s, `"imageSize":307200`, `"imageSize":-1`, 1)},
		{"not json", "{"},
	} {
		if tc.in == s {
			t.Fatalf("%s: no change", tc.name)
		}
		if _, err := decodeMetadata([]byte(tc.in)); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	_, err = decodeMetadata([]byte(strings.Replace(s, `"format":1`, `"format":3`, 1)))
	if !errors.Is(err, errUnsupported) {
		t.Errorf("format 3: %v, want unsupported", err)
	}
	// Format 2 is a delta bundle's: without "delta" it is malformed, not unsupported.
	_, err = decodeMetadata([]byte(strings.Replace(s, `"format":1`, `"format":2`, 1)))
	if err == nil || errors.Is(err, errUnsupported) {
		t.Errorf("format 2 without delta: %v, want malformed", err)
	}
}

func TestUnsupportedFormatIsNotCorrupt(t *testing.T) {
	meta := []byte(`{"format":3,"whatever":true}`)
	b := makeTar(t, entry{name: MetadataName, body: string(meta)}, entry{name: "rootfs.x", body: "x"})
	_, err := readAll(b)
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "unsupported") {
		t.Fatalf("err %v, want unsupported format, not corrupt", err)
	}
}

func TestSignature(t *testing.T) {
	pub, priv := testKey(t, 1)
	other, otherPriv := testKey(t, 2)
	f := newFixture(t, true)
	signed := f.write(t, priv)
	unsigned := f.write(t, nil)
	for _, tc := range []struct {
		name   string
		bundle []byte
		opts   []ReadOption
		want   error
	}{
		{"wrong key", signed, []ReadOption{WithKeys(other)}, ErrBadSignature},
		{"signed by another key", f.write(t, otherPriv), []ReadOption{WithKeys(pub)}, ErrBadSignature},
		{"unsigned with keys", unsigned, []ReadOption{WithKeys(pub)}, ErrUnsigned},
		{"unsigned without keys", unsigned, nil, nil},
		{"signed without keys", signed, nil, nil},
	} {
		_, err := readAll(tc.bundle, tc.opts...)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, opts := range [][]ReadOption{{WithKeys()}, {WithKeys(ed25519.PublicKey{1, 2, 3})}} {
		_, err := NewReader(bytes.NewReader(signed), opts...)
		if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrBadSignature) {
			t.Errorf("bad options: err %v, want an option error", err)
		}
	}
}

// span is where a member's data lies in a bundle.
type span struct {
	off, size int64
	data      []byte
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func memberSpans(t testing.TB, b []byte) map[string]span {
	t.Helper()
	c := &countReader{r: bytes.NewReader(b)}
	tr := tar.NewReader(c)
	spans := map[string]span{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return spans
		}
		if err != nil {
			t.Fatal(err)
		}
		s := span{off: c.n, size: h.Size}
		s.data = b[s.off : s.off+s.size]
		spans[h.Name] = s
	}
}

func flip(b []byte, off int64) []byte {
	c := bytes.Clone(b)
	c[off] ^= 0x01
	return c
}

func TestTampered(t *testing.T) {
	pub, priv := testKey(t, 1)
	f := newFixture(t, true)
	signed := f.write(t, priv)
	spans := memberSpans(t, signed)
	meta, sig, root, boot := spans[MetadataName], spans[SignatureName], spans[RootfsName], spans[BootName]
	metaText := string(meta.data)
	keys := []ReadOption{WithKeys(pub)}
	type tamper struct {
		name string
		off  int64
		opts []ReadOption
		want error
	}
	var cases []tamper
	// Every metadata byte is covered by the signature.
	for i := int64(0); i < meta.size; i++ {
		cases = append(cases, tamper{fmt.Sprintf("metadata byte %d", i), meta.off + i, keys, ErrBadSignature})
	}
	for i := int64(0); i < sig.size; i++ {
		cases = append(cases, tamper{fmt.Sprintf("signature byte %d", i), sig.off + i, keys, ErrBadSignature})
	}
	// Without keys, the digests in the metadata still bind the payloads.
	d := int64(strings.Index(metaText, f.m.Rootfs.SHA256))
	cases = append(cases,
		// The stored digest of a compressed root filesystem is checked on request (the image digest
		// covers what is used).
		tamper{"metadata rootfs sha256, unverified", meta.off + d + 5, []ReadOption{VerifyStored()}, ErrCorrupt},
		tamper{"metadata brace, unverified", meta.off, nil, ErrCorrupt},
		tamper{"metadata rootfs image sha256, unverified", meta.off + int64(strings.Index(metaText, f.m.Rootfs.ImageSHA256)), nil, ErrCorrupt},
		tamper{"metadata boot sha256, unverified", meta.off + int64(strings.Index(metaText, f.m.Boot.SHA256)) + 63, nil, ErrCorrupt},
		tamper{"metadata header", meta.off - 512 + 3, keys, ErrCorrupt},
		tamper{"rootfs header size", root.off - 512 + 124 + 5, keys, ErrCorrupt},
	)
	for _, at := range []int64{0, 4, 13, root.size / 3, root.size / 2, root.size - 5, root.size - 1} {
		opts := keys
		if at >= root.size-4 {
			// zstd's frame checksum: the image is unchanged, so only the stored digest tells.
			opts = append(slices.Clone(keys), VerifyStored())
		}
		cases = append(cases, tamper{fmt.Sprintf("rootfs byte %d", at), root.off + at, opts, ErrCorrupt})
	}
	for _, at := range []int64{0, 100, 513, 1024 + 7, boot.size - 1, boot.size - 600} {
		cases = append(cases, tamper{fmt.Sprintf("boot byte %d", at), boot.off + at, keys, ErrCorrupt})
	}
	for _, at := range []int64{1, 513, 1023} {
		cases = append(cases, tamper{fmt.Sprintf("end marker byte %d", at), boot.off + (boot.size+511)/512*512 + at, keys, ErrCorrupt})
	}
	for _, tc := range cases {
		_, err := readAll(flip(signed, tc.off), tc.opts...)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s (offset %d): err %v, want %v", tc.name, tc.off, err, tc.want)
		}
	}
}

func TestTruncated(t *testing.T) {
	pub, priv := testKey(t, 1)
	for _, withBoot := range []bool{false, true} {
		f := smallWindowed(t, withBoot)
		b := f.write(t, priv)
		if _, err := readAll(b, WithKeys(pub)); err != nil {
			t.Fatal(err)
		}
		// Every offset in the headers, metadata and signature and in the last 8 KiB (boot member, end
		// marker); the middle of the rootfs payload sampled.
		for n := 0; n < len(b); n++ {
			if n > 3072 && n < len(b)-8192 && n%61 != 0 {
				continue
			}
			for i, opts := range [][]ReadOption{{WithKeys(pub)}, nil} {
				if i > 0 && n > 3072 {
					break // past the signature, keys change nothing
				}
				if _, err := readAll(b[:n], opts...); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("boot %v, truncated to %d of %d bytes, keys %v: err %v, want ErrCorrupt", withBoot, n, len(b), opts != nil, err)
				}
			}
		}
	}
}

func TestStructure(t *testing.T) {
	_, priv := testKey(t, 1)
	f := newFixture(t, true)
	spans := memberSpans(t, f.write(t, priv))
	meta := entry{name: MetadataName, body: string(spans[MetadataName].data)}
	sig := entry{name: SignatureName, body: string(spans[SignatureName].data)}
	root := entry{name: RootfsName, body: string(f.rootfs)}
	boot := entry{name: BootName, body: string(f.boot)}
	extra := entry{name: "extra.txt", body: "x"}
	for _, tc := range []struct {
		name    string
		entries []entry
	}{
		{"empty archive", nil},
		{"metadata only", []entry{meta}},
		{"metadata and signature only", []entry{meta, sig}},
		{"signature first", []entry{sig, meta, root, boot}},
		{"rootfs first", []entry{root, meta, boot}},
		{"boot before rootfs", []entry{meta, sig, boot, root}},
		{"signature after rootfs", []entry{meta, root, sig, boot}},
		{"no boot member", []entry{meta, sig, root}},
		{"extra member first", []entry{extra, meta, sig, root, boot}},
		{"extra member after metadata", []entry{meta, extra, sig, root, boot}},
		{"extra member after signature", []entry{meta, sig, extra, root, boot}},
		{"extra member after rootfs", []entry{meta, sig, root, extra, boot}},
		{"extra member at the end", []entry{meta, sig, root, boot, extra}},
		{"second boot member", []entry{meta, sig, root, boot, boot}},
		{"second metadata", []entry{meta, meta, sig, root, boot}},
		{"directory member", []entry{meta, sig, {name: "d/", typ: tar.TypeDir}, root, boot}},
		{"metadata as directory", []entry{{name: MetadataName, typ: tar.TypeDir}, root, boot}},
		{"rootfs as symlink", []entry{meta, sig, {name: RootfsName, body: "x", typ: tar.TypeSymlink}, boot}},
		{"short signature", []entry{meta, {name: SignatureName, body: "abc"}, root, boot}},
		{"short rootfs", []entry{meta, sig, {name: RootfsName, body: string(f.rootfs[:100])}, boot}},
	} {
		b := makeTar(t, tc.entries...)
		if _, err := readAll(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", tc.name, err)
		}
	}
	// Without boot in the metadata, anything after the rootfs is an extra member.
	g := newFixture(t, false)
	gm := entry{name: MetadataName, body: string(memberSpans(t, g.write(t, nil))[MetadataName].data)}
	groot := entry{name: RootfsName, body: string(g.rootfs)}
	if _, err := readAll(makeTar(t, gm, groot)); err != nil {
		t.Fatalf("reassembled bundle: %v", err)
	}
	for _, tail := range []entry{extra, boot} {
		if _, err := readAll(makeTar(t, gm, groot, tail)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("member %s after the only payload: err %v, want ErrCorrupt", tail.name, err)
		}
	}
	// Garbage is not a bundle.
	for _, b := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{0}, 2048), bytes.Repeat([]byte{0xff}, 4096)} {
		if _, err := readAll(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%d bytes of garbage: err %v, want ErrCorrupt", len(b), err)
		}
	}
}

func TestBootPaths(t *testing.T) {
	pub, priv := testKey(t, 1)
	for _, tc := range []struct {
		name    string
		entries []entry
		ok      bool
	}{
		{"dot-dot", []entry{{name: "../x", body: "x"}}, false},
		{"dot-dot inside", []entry{{name: "a/../../x", body: "x"}}, false},
		{"dot-dot clean", []entry{{name: "a/../x", body: "x"}}, false},
		{"absolute", []entry{{name: "/abs", body: "x"}}, false},
		{"absolute directory", []entry{{name: "/etc/", typ: tar.TypeDir}}, false},
		{"backslash", []entry{{name: `a\b`, body: "x"}}, false},
		{"empty element", []entry{{name: "a//b", body: "x"}}, false},
		{"symlink", []entry{{name: "link", body: "/etc/passwd", typ: tar.TypeSymlink}}, false},
		{"hard link", []entry{{name: "x", body: "y"}, {name: "link", body: "x", typ: tar.TypeLink}}, false},
		{"fifo", []entry{{name: "fifo", typ: tar.TypeFifo}}, false},
		{"duplicate file", []entry{{name: "a", body: "1"}, {name: "a", body: "2"}}, false},
		{"file then directory", []entry{{name: "a", body: "1"}, {name: "a/", typ: tar.TypeDir}}, false},
		{"file under a file", []entry{{name: "a", body: "1"}, {name: "a/b", body: "2"}}, false},
		{"file over a directory", []entry{{name: "a/b", body: "2"}, {name: "a", body: "1"}}, false},
		{"dot-slash prefix", []entry{{name: "./", typ: tar.TypeDir}, {name: "./a/", typ: tar.TypeDir}, {name: "./a/b", body: "x"}}, true},
		{"directory twice", []entry{{name: "a/b", body: "x"}, {name: "a/", typ: tar.TypeDir}}, true},
	} {
		f := newFixture(t, false)
		f.setBoot(makeTar(t, tc.entries...))
		_, err := readAll(f.write(t, priv), WithKeys(pub))
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestBootCallback(t *testing.T) {
	f := newFixture(t, true)
	b := f.write(t, nil)

	// Boot before the rootfs was read is a usage error.
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Boot(func(string, int64, io.Reader) error { return nil }); err == nil || errors.Is(err, ErrCorrupt) {
		t.Errorf("boot first: err %v", err)
	}

	// A callback error ends Boot and sticks.
	r, _ = NewReader(bytes.NewReader(b))
	rd, _ := r.Rootfs()
	if _, err := io.Copy(io.Discard, rd); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Rootfs(); err == nil {
		t.Error("second Rootfs: no error")
	}
	stop := errors.New("stop")
	var names []string
	err = r.Boot(func(name string, _ int64, _ io.Reader) error {
		names = append(names, name)
		return stop
	})
	if !errors.Is(err, stop) || len(names) != 1 || names[0] != "config.json" {
		t.Errorf("err %v after %v, want stop after config.json", err, names)
	}
	if err := r.Boot(func(string, int64, io.Reader) error { return nil }); !errors.Is(err, stop) {
		t.Errorf("Boot again: %v", err)
	}

	// A callback that reads nothing still gets every file, and the member is verified.
	r, _ = NewReader(bytes.NewReader(b))
	rd, _ = r.Rootfs()
	io.Copy(io.Discard, rd)
	names = nil
	if err := r.Boot(func(name string, _ int64, _ io.Reader) error { names = append(names, name); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"config.json", "overlays/x.dtbo", "os-release", "empty"}; !slices.Equal(names, want) {
		t.Errorf("files %v, want %v", names, want)
	}

	// Without boot member, Boot returns nil once the rootfs is read.
	g := newFixture(t, false)
	r, _ = NewReader(bytes.NewReader(g.write(t, nil)))
	rd, _ = r.Rootfs()
	io.Copy(io.Discard, rd)
	if err := r.Boot(func(string, int64, io.Reader) error { return errors.New("called") }); err != nil {
		t.Error(err)
	}
}

func TestRootfsErrorSurfacesInsteadOfEOF(t *testing.T) {
	// A payload whose digest is wrong decompresses fine; only the end can tell, and it must.
	f := newFixture(t, false)
	f.m.Rootfs.ImageSHA256 = digest([]byte("other"))
	b := f.write(t, nil)
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	rd, _ := r.Rootfs()
	n, err := io.Copy(io.Discard, rd)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err %v, want ErrCorrupt", err)
	}
	if n != int64(len(f.image)) {
		t.Errorf("read %d bytes before the error, want %d", n, len(f.image))
	}
	if _, err := rd.Read(make([]byte, 10)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("read after failure: %v", err)
	}
	// An image larger than the metadata says fails before its end.
	f = newFixture(t, false)
	f.m.Rootfs.ImageSize = 1000
	r, _ = NewReader(bytes.NewReader(f.write(t, nil)))
	rd, _ = r.Rootfs()
	n, err = io.Copy(io.Discard, rd)
	if !errors.Is(err, ErrCorrupt) || n > 1<<20 {
		t.Errorf("oversized image: %d bytes, err %v", n, err)
	}
}

// failingReader yields n bytes of r and then err.
type failingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	p = p[:min(int64(len(p)), f.n)]
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

func TestSourceErrorIsNotCorruption(t *testing.T) {
	f := newFixture(t, true)
	b := f.write(t, nil)
	boom := errors.New("connection reset")
	for _, at := range []int64{10, 700, 3000, int64(len(b)) - 100} {
		_, err := readFrom(&failingReader{r: bytes.NewReader(b), n: at, err: boom})
		if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
			t.Errorf("source failing at %d: err %v, want the source's error", at, err)
		}
	}
}

func TestWriteChecks(t *testing.T) {
	_, priv := testKey(t, 1)
	f := newFixture(t, true)
	write := func(m Metadata, rootfs, boot io.Reader, key ed25519.PrivateKey) error {
		return Write(io.Discard, m, rootfs, boot, key)
	}
	root := func() io.Reader { return bytes.NewReader(f.rootfs) }
	boot := func() io.Reader { return bytes.NewReader(f.boot) }
	if err := write(f.m, root(), boot(), priv); err != nil {
		t.Fatal(err)
	}
	m0 := f.m
	m0.Format = 0
	if err := write(m0, root(), boot(), nil); err != nil {
		t.Errorf("format 0: %v", err)
	}
	mod := func(fn func(m *Metadata)) Metadata {
		m := f.m
		b := *m.Boot
		m.Boot = &b
		fn(&m)
		return m
	}
	for _, tc := range []struct {
		name         string
		m            Metadata
		rootfs, boot io.Reader
		key          ed25519.PrivateKey
	}{
		{"rootfs short", f.m, bytes.NewReader(f.rootfs[:10]), boot(), nil},
		{"rootfs long", f.m, io.MultiReader(root(), strings.NewReader("x")), boot(), nil},
		{"rootfs digest", f.m, bytes.NewReader(flip(f.rootfs, 3)), boot(), nil},
		{"boot digest", f.m, root(), bytes.NewReader(flip(f.boot, 3)), nil},
		{"boot missing", f.m, root(), nil, nil},
		{"boot without metadata", mod(func(m *Metadata) { m.Boot = nil }), root(), boot(), nil},
		{"no rootfs", f.m, nil, boot(), nil},
		{"format 2", mod(func(m *Metadata) { m.Format = 2 }), root(), boot(), nil},
		{"same names", mod(func(m *Metadata) { m.Boot.Name = RootfsName }), root(), boot(), nil},
		{"bad name", mod(func(m *Metadata) { m.Rootfs.Name = "../x" }), root(), boot(), nil},
		{"empty device type", mod(func(m *Metadata) { m.DeviceType = "" }), root(), boot(), nil},
		{"short key", f.m, root(), boot(), priv[:10]},
	} {
		if err := write(tc.m, tc.rootfs, tc.boot, tc.key); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestWriteDeterministic(t *testing.T) {
	_, priv := testKey(t, 1)
	f := newFixture(t, true)
	a, b := f.write(t, priv), f.write(t, priv)
	if !bytes.Equal(a, b) {
		t.Error("same inputs, different bundles")
	}
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Mode != 0o644 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.ModTime.Unix() != testCreated ||
			h.Format != tar.FormatUSTAR {
			t.Errorf("member %s: mode %o uid %d gid %d %q/%q mtime %v format %v", h.Name, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime, h.Format)
		}
	}
}
