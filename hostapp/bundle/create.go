package bundle

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
)

// CreateOptions says what Create puts into a bundle.
type CreateOptions struct {
	DeviceType, Arch, Version string             // metadata; printable ASCII, not empty
	Created                   int64              // Unix seconds, SOURCE_DATE_EPOCH for reproducible bundles
	Image                     string             // path of the ext4 filesystem image
	BootDir                   string             // directory of boot partition files; "" for none
	Key                       ed25519.PrivateKey // signs the bundle; nil for an unsigned one
	TempDir                   string             // where the compressed payloads wait; "" for os.TempDir
	// Base, when set, makes a delta bundle (format DeltaFormatVersion): its root filesystem member
	// carries only the chunks of Image that Base lacks, with the chunk index of Image.
	Base *DeltaBase
	// ChunkStore, when set, makes a chunked bundle (format DeltaFormatVersion): its root filesystem
	// member is the chunk index of Image, whose chunks are written into the directory ChunkStore as
	// files named by their sha256; the bundle says they are in ChunkStoreName next to it.
	ChunkStore string
	Progress   func(done, total int64)
}

func (o *CreateOptions) check() error {
	for _, f := range []struct{ name, v string }{{"device type", o.DeviceType}, {"arch", o.Arch}, {"version", o.Version}} {
		if err := checkText(f.v); err != nil {
			return fmt.Errorf("create bundle: %s %q: %w", f.name, f.v, err)
		}
	}
	switch {
	case o.Image == "":
		return errors.New("create bundle: no image")
	case o.Created < 0:
		return fmt.Errorf("create bundle: created %d: negative", o.Created)
	case o.Key != nil && len(o.Key) != ed25519.PrivateKeySize:
		return fmt.Errorf("create bundle: signing key is %d bytes, want %d", len(o.Key), ed25519.PrivateKeySize)
	}
	return nil
}

// Create makes a bundle of the ext4 filesystem image o.Image and the files under o.BootDir and streams it
// to w. It compresses the image with zstd into a file in o.TempDir first, since the metadata at the
// start of the bundle holds the digests. The same options and inputs give the same bundle bytes.
//
// Progress, when set, is called with bytes done of total: first the image bytes compressed of the image
// size, then, with total grown by the payload sizes, the bytes written on top of that.
func Create(ctx context.Context, o CreateOptions, w io.Writer) (Metadata, error) {
	if err := o.check(); err != nil {
		return Metadata{}, err
	}
	progress := o.Progress
	if progress == nil {
		progress = func(int64, int64) {}
	}
	img, err := os.Open(o.Image)
	if err != nil {
		return Metadata{}, fmt.Errorf("create bundle: %w", err)
	}
	defer img.Close()
	size, err := checkExt4(img)
	if err != nil {
		return Metadata{}, fmt.Errorf("create bundle: image %s: %w", o.Image, err)
	}

	rootTmp, err := tempFile(o.TempDir, "hostos-bundle-*.rootfs.zst")
	if err != nil {
		return Metadata{}, err
	}
	defer rootTmp.discard()
	var rootfs Payload
	var dm *Delta
	format := FormatVersion
	var chunks *Chunks
	switch {
	case o.Base != nil && o.ChunkStore != "":
		return Metadata{}, errors.New("create bundle: a delta bundle or a chunked one, not both")
	case o.Base != nil:
		format = DeltaFormatVersion
		rootfs, dm, err = deltaPayload(ctx, *o.Base, img, size, rootTmp.File, progress)
	case o.ChunkStore != "":
		format, chunks = DeltaFormatVersion, &Chunks{Store: ChunkStoreName}
		rootfs, err = chunkPayload(ctx, bufio.NewReaderSize(img, 1<<20), size, o.ChunkStore, rootTmp, progress)
	default:
		rootfs, err = compressImage(ctx, img, size, rootTmp, progress)
	}
	if err != nil {
		return Metadata{}, fmt.Errorf("create bundle: image %s: %w", o.Image, err)
	}

	mtime := time.Unix(o.Created, 0)
	m := Metadata{Format: format, DeviceType: o.DeviceType, Arch: o.Arch, Version: o.Version,
		Created: o.Created, Rootfs: rootfs, Delta: dm, Chunks: chunks}
	var boot io.Reader
	total := size + rootfs.Size
	if o.BootDir != "" {
		bootTmp, err := tempFile(o.TempDir, "hostos-bundle-*.boot.tar")
		if err != nil {
			return Metadata{}, err
		}
		defer bootTmp.discard()
		p, err := tarBootDir(ctx, o.BootDir, mtime, bootTmp)
		if err != nil {
			return Metadata{}, fmt.Errorf("create bundle: boot directory %s: %w", o.BootDir, err)
		}
		m.Boot = &p
		total += p.Size
		if _, err := bootTmp.Seek(0, io.SeekStart); err != nil {
			return Metadata{}, fmt.Errorf("create bundle: %w", err)
		}
		boot = bufio.NewReaderSize(bootTmp, 1<<20)
	}
	if _, err := rootTmp.Seek(0, io.SeekStart); err != nil {
		return Metadata{}, fmt.Errorf("create bundle: %w", err)
	}

	done := size
	count := func(n int) {
		done += int64(n)
		progress(done, total)
	}
	rootR := &ctxReader{ctx: ctx, r: bufio.NewReaderSize(rootTmp, 1<<20), count: count}
	if boot != nil {
		boot = &ctxReader{ctx: ctx, r: boot, count: count}
	}
	if err := Write(w, m, rootR, boot, o.Key); err != nil {
		return Metadata{}, fmt.Errorf("create bundle: %w", err)
	}
	return m, nil
}

// checkExt4 checks that f holds an ext4 (or ext2/3) superblock and returns its size.
func checkExt4(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, errors.New("not a regular file")
	}
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 1024+56); err != nil || magic != [2]byte{0x53, 0xef} {
		return 0, errors.New("no ext4 superblock")
	}
	return st.Size(), nil
}

type tempPayload struct{ *os.File }

func tempFile(dir, pattern string) (tempPayload, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return tempPayload{}, fmt.Errorf("create bundle: %w", err)
	}
	return tempPayload{f}, nil
}

func (t tempPayload) discard() {
	t.Close()
	os.Remove(t.Name())
}

// encoderConcurrency is fixed rather than GOMAXPROCS: the encoder pipelines block by block, and its
// output is the same at every concurrency (TestEncoderDeterministic), but a fixed value keeps it so.
const encoderConcurrency = 2

// newEncoder returns the zstd encoder of bundle payloads. Its settings are fixed, so that the same input
// gives the same bytes.
func newEncoder(w io.Writer) (*zstd.Encoder, error) {
	return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(encoderConcurrency),
		zstd.WithWindowSize(8<<20), zstd.WithEncoderCRC(true))
}

// compressImage compresses size bytes of src into dst and describes the result as the rootfs payload.
func compressImage(ctx context.Context, src io.Reader, size int64, dst io.Writer, progress func(done, total int64)) (Payload, error) {
	stored := &digestWriter{h: sha256.New()}
	bw := bufio.NewWriterSize(io.MultiWriter(dst, stored), 1<<20)
	zw, err := newEncoder(bw)
	if err != nil {
		return Payload{}, fmt.Errorf("zstd encoder: %w", err)
	}
	defer zw.Close()
	image := &digestWriter{h: sha256.New()}
	chunks := NewChunkDigest(DefaultImageChunkSize)
	buf := make([]byte, 1<<20)
	for image.n < size {
		if err := ctx.Err(); err != nil {
			return Payload{}, err
		}
		n, err := io.ReadFull(src, buf[:min(int64(len(buf)), size-image.n)])
		if err != nil {
			return Payload{}, fmt.Errorf("read at %d: %w", image.n, err)
		}
		image.Write(buf[:n])
		chunks.Write(buf[:n])
		if _, err := zw.Write(buf[:n]); err != nil {
			return Payload{}, fmt.Errorf("compress: %w", err)
		}
		progress(image.n, size)
	}
	if err := zw.Close(); err != nil {
		return Payload{}, fmt.Errorf("compress: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return Payload{}, fmt.Errorf("write compressed image: %w", err)
	}
	return Payload{Name: RootfsName, Filesystem: FilesystemExt4, Compression: CompressionZstd,
		Size: stored.n, SHA256: stored.sum(), ImageSize: image.n, ImageSHA256: image.sum(),
		ImageChunkSize: DefaultImageChunkSize, ImageChunksSHA256: chunks.Sum()}, nil
}

// tarBootDir writes the directories and regular files under dir as a tar to dst, in lexical order with
// fixed modes, owners and times, and describes it as the boot payload.
func tarBootDir(ctx context.Context, dir string, mtime time.Time, dst io.Writer) (Payload, error) {
	d := &digestWriter{h: sha256.New()}
	bw := bufio.NewWriterSize(io.MultiWriter(dst, d), 1<<20)
	tw := tar.NewWriter(bw)
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime}
		switch {
		case e.IsDir():
			hdr.Typeflag, hdr.Mode, hdr.Name = tar.TypeDir, 0o755, hdr.Name+"/"
		case e.Type().IsRegular():
			info, err := e.Info()
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, info.Size()
		default:
			return fmt.Errorf("%s: not a regular file or directory", rel)
		}
		if _, _, err := bootEntry(hdr); err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			return copyFile(tw, p, hdr.Size)
		}
		return nil
	})
	if err != nil {
		return Payload{}, err
	}
	if err := tw.Close(); err != nil {
		return Payload{}, err
	}
	if err := bw.Flush(); err != nil {
		return Payload{}, err
	}
	sum := d.sum()
	return Payload{Name: BootName, Compression: CompressionNone, Size: d.n, SHA256: sum, ImageSize: d.n, ImageSHA256: sum}, nil
}

func copyFile(w io.Writer, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if n, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	} else if n != size {
		return fmt.Errorf("%s: changed while read", path)
	}
	return nil
}

type digestWriter struct {
	h hash.Hash
	n int64
}

func (d *digestWriter) Write(p []byte) (int, error) {
	d.h.Write(p)
	d.n += int64(len(p))
	return len(p), nil
}

func (d *digestWriter) sum() string { return hex.EncodeToString(d.h.Sum(nil)) }

// ctxReader stops reading when ctx is done and counts what it read.
type ctxReader struct {
	ctx   context.Context
	r     io.Reader
	count func(int)
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.count(n)
	return n, err
}
