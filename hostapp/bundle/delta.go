package bundle

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hostos/hostos/hostapp/delta"
	"github.com/hostos/hostos/rootfs/ext4"
)

// DeltaBase is the image a delta bundle applies to: the root filesystem a device runs, as an older
// bundle holds it or as it sits in a slot.
type DeltaBase struct {
	// Image holds the base filesystem image in its first Size bytes. Its volume label is ignored (a
	// slot's filesystem carries the slot's label, a bundle's none): see Unlabelled.
	Image   io.ReaderAt
	Size    int64
	Version string // OS version of the base, printable ASCII
}

// Unlabelled returns r (an ext4 filesystem image) as it reads with its volume label cleared, which makes
// a filesystem written into a slot (and labelled there) read as the bundle's image it came from.
func Unlabelled(r io.ReaderAt) (io.ReaderAt, error) {
	head := make([]byte, ext4.SuperblockEnd)
	if _, err := r.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("ext4 superblock: %w", err)
	}
	if err := ext4.SetLabel(head, ""); err != nil {
		return nil, err
	}
	return &overlay{r: r, head: head}, nil
}

// overlay reads r with its first len(head) bytes replaced by head.
type overlay struct {
	r    io.ReaderAt
	head []byte
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.r.ReadAt(p, off)
	if off < int64(len(o.head)) {
		copy(p[:n], o.head[off:])
	}
	return n, err
}

// deltaPayload writes into dst the delta of the image (size bytes) against base and describes it as
// the root filesystem payload of a delta bundle, with the metadata's delta object.
func deltaPayload(ctx context.Context, base DeltaBase, img *os.File, size int64, dst *os.File, progress func(done, total int64)) (Payload, *Delta, error) {
	if err := checkText(base.Version); err != nil {
		return Payload{}, nil, fmt.Errorf("base version %q: %w", base.Version, err)
	}
	bimg, err := Unlabelled(base.Image)
	if err != nil {
		return Payload{}, nil, fmt.Errorf("base: %w", err)
	}
	// The image's digests, as a full bundle's metadata has them.
	image := &digestWriter{h: sha256.New()}
	chunks := NewChunkDigest(DefaultImageChunkSize)
	if _, err := io.Copy(io.MultiWriter(image, chunks), &ctxReader{ctx: ctx, r: io.NewSectionReader(img, 0, size),
		count: func(int) { progress(image.n/2, size) }}); err != nil {
		return Payload{}, nil, fmt.Errorf("read image: %w", err)
	}
	stored := &digestWriter{h: sha256.New()}
	bw := bufio.NewWriterSize(io.MultiWriter(dst, stored), 1<<20)
	if _, err := delta.Create(ctx, bimg, base.Size, base.Version, img, size, delta.DefaultParams, bw); err != nil {
		return Payload{}, nil, err
	}
	if err := bw.Flush(); err != nil {
		return Payload{}, nil, fmt.Errorf("write delta: %w", err)
	}
	progress(size, size)
	h, _, err := delta.ReadHeader(dst, stored.n)
	if err != nil {
		return Payload{}, nil, err
	}
	ib, _ := h.Index.MarshalBinary()
	isum := sha256.Sum256(ib)
	p := Payload{Name: DeltaName, Filesystem: FilesystemExt4, Compression: CompressionDelta,
		Size: stored.n, SHA256: stored.sum(), ImageSize: size, ImageSHA256: image.sum(),
		ImageChunkSize: DefaultImageChunkSize, ImageChunksSHA256: chunks.Sum()}
	d := &Delta{BaseSize: base.Size, BaseSHA256: hex.EncodeToString(h.BaseSum[:]), BaseVersion: base.Version,
		IndexSHA256: hex.EncodeToString(isum[:])}
	return p, d, nil
}

// CheckDelta checks a delta member d (size bytes, already checked against the metadata's Size and
// SHA256) against the metadata m of its bundle: the base and the index it carries must be the ones the
// signed metadata names, and the image it makes the metadata's size.
func CheckDelta(m Metadata, d io.ReaderAt, size int64) (delta.Header, error) {
	if m.Delta == nil {
		return delta.Header{}, errors.New("not a delta bundle")
	}
	h, _, err := delta.ReadHeader(d, size)
	if err != nil {
		return h, corrupt("delta member: %w", err)
	}
	ib, _ := h.Index.MarshalBinary()
	isum := sha256.Sum256(ib)
	switch {
	case hex.EncodeToString(h.BaseSum[:]) != m.Delta.BaseSHA256 || h.BaseSize != m.Delta.BaseSize:
		return h, corrupt("delta member: its base differs from the one metadata names")
	case hex.EncodeToString(isum[:]) != m.Delta.IndexSHA256:
		return h, corrupt("delta member: chunk index sha256 %x, metadata says %s", isum, m.Delta.IndexSHA256)
	case h.Index.Size != m.Rootfs.ImageSize:
		return h, corrupt("delta member: makes an image of %d bytes, metadata says %d", h.Index.Size, m.Rootfs.ImageSize)
	}
	return h, nil
}

// ExtractImage reads a full bundle from r and writes its root filesystem image to dst, checked against
// the metadata, then reads the rest of the bundle, which checks it too. A delta bundle is refused.
func ExtractImage(r io.Reader, dst io.Writer, opts ...ReadOption) (Metadata, error) {
	br, err := NewReader(r, opts...)
	if err != nil {
		return Metadata{}, err
	}
	m := br.Metadata()
	if m.Delta != nil {
		return m, fmt.Errorf("a delta bundle (from %s): it holds no whole image", m.Delta.BaseVersion)
	}
	img, err := br.Rootfs()
	if err != nil {
		return m, err
	}
	if _, err := io.CopyBuffer(dst, img, make([]byte, 1<<20)); err != nil {
		return m, err
	}
	return m, br.Boot(func(_ string, _ int64, rd io.Reader) error {
		_, err := io.Copy(io.Discard, rd)
		return err
	})
}
