package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/ulikunitz/xz"
)

// copyChunk is the unit in which image data is read, zeros are emitted and
// cancellation is checked.
const copyChunk = 1 << 20

// Compress streams the image file img, compressed with algo ("zst" or "xz"),
// to w. Holes are not read from disk: the compressor is fed zeros for them.
// xz uses the xz program (two threads) when it is on PATH and a pure Go
// encoder otherwise. progress, if not nil, is called with the image bytes
// consumed so far and the image size.
func Compress(ctx context.Context, img string, w io.Writer, algo string, progress func(done, total int64)) error {
	var xzPath string
	if algo == "xz" {
		if p, err := exec.LookPath("xz"); err == nil {
			xzPath = p
		}
	}
	return compress(ctx, img, w, algo, xzPath, progress)
}

// compress is Compress with the xz program chosen by the caller; an empty
// xzPath selects the pure Go xz encoder.
func compress(ctx context.Context, img string, w io.Writer, algo, xzPath string, progress func(done, total int64)) error {
	f, size, exts, err := openMapped(img)
	if err != nil {
		return err
	}
	defer f.Close()
	cw, err := newCompressor(ctx, w, algo, xzPath)
	if err != nil {
		return err
	}
	if err := feedSparse(ctx, cw, f, size, exts, progress); err != nil {
		cw.Abort()
		return err
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("finish %s stream: %w", algo, err)
	}
	return nil
}

// feedSparse writes the size bytes of f to w, reading only the data extents
// and writing zeros for the holes between them.
func feedSparse(ctx context.Context, w io.Writer, f *os.File, size int64, exts []extent, progress func(done, total int64)) error {
	if progress == nil {
		progress = func(int64, int64) {}
	}
	zeros := make([]byte, copyChunk)
	buf := make([]byte, copyChunk)
	var off int64
	progress(0, size)
	writeZeros := func(n int64) error {
		for n > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := min(n, copyChunk)
			if _, err := w.Write(zeros[:k]); err != nil {
				return fmt.Errorf("compress image at %d: %w", off, err)
			}
			n -= k
			off += k
			progress(off, size)
		}
		return nil
	}
	for _, e := range exts {
		if err := writeZeros(e.Off - off); err != nil {
			return err
		}
		for end := e.Off + e.Len; off < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := min(end-off, copyChunk)
			if _, err := io.ReadFull(io.NewSectionReader(f, off, k), buf[:k]); err != nil {
				return fmt.Errorf("read image at %d: %w", off, err)
			}
			if _, err := w.Write(buf[:k]); err != nil {
				return fmt.Errorf("compress image at %d: %w", off, err)
			}
			off += k
			progress(off, size)
		}
	}
	return writeZeros(size - off)
}

// compressor is a compressing stream: Close finishes it, Abort discards it.
type compressor interface {
	io.WriteCloser
	Abort()
}

func newCompressor(ctx context.Context, w io.Writer, algo, xzPath string) (compressor, error) {
	switch algo {
	case "zst":
		zw, err := newSeekableZstd(w)
		if err != nil {
			return nil, fmt.Errorf("zstd encoder: %w", err)
		}
		return zw, nil
	case "xz":
		if xzPath != "" {
			return startXZ(ctx, xzPath, w)
		}
		xw, err := xz.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("xz encoder: %w", err)
		}
		return &goXZCompressor{xw}, nil
	default:
		return nil, fmt.Errorf("compression %q: unsupported, want zst or xz", algo)
	}
}

type goXZCompressor struct{ *xz.Writer }

func (*goXZCompressor) Abort() {}

// xzProcess is the typed wrapper of `xz -T2 -c`: it compresses what is written
// to it into the writer it was started with.
type xzProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
	cancel context.CancelFunc
}

func startXZ(ctx context.Context, path string, w io.Writer) (*xzProcess, error) {
	ctx, cancel := context.WithCancel(ctx)
	p := &xzProcess{cancel: cancel}
	p.cmd = exec.CommandContext(ctx, path, "-T2", "-z", "-c", "-q")
	p.cmd.Stdout = w
	p.cmd.Stderr = &p.stderr
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("xz stdin: %w", err)
	}
	p.stdin = stdin
	if err := p.cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start xz: %w", err)
	}
	return p, nil
}

func (p *xzProcess) Write(b []byte) (int, error) {
	n, err := p.stdin.Write(b)
	if err != nil {
		return n, fmt.Errorf("xz: %w", p.failure(err))
	}
	return n, nil
}

// failure explains a broken pipe by xz's own exit status and message.
func (p *xzProcess) failure(err error) error {
	if !errors.Is(err, os.ErrClosed) && !errors.Is(err, syscall.EPIPE) {
		return err
	}
	p.stdin.Close()
	if werr := p.cmd.Wait(); werr != nil {
		return p.describe(werr)
	}
	return err
}

func (p *xzProcess) describe(err error) error {
	if msg := strings.TrimSpace(p.stderr.String()); msg != "" {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

func (p *xzProcess) Close() error {
	defer p.cancel()
	if err := p.stdin.Close(); err != nil {
		return fmt.Errorf("close xz input: %w", err)
	}
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("xz: %w", p.describe(err))
	}
	return nil
}

func (p *xzProcess) Abort() {
	p.cancel()
	p.stdin.Close()
	_ = p.cmd.Wait()
}

// SparseCopy copies the image file src to dst, which is created or truncated.
// It first tries a reflink clone; otherwise it copies only the data ranges of
// src (with copy_file_range where the filesystem allows), so holes stay holes.
func SparseCopy(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open copy source: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("stat copy source: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("copy source %s: not a regular file", src)
	}
	if di, err := os.Stat(dst); err == nil && os.SameFile(fi, di) {
		return fmt.Errorf("copy %s to %s: same file", src, dst)
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("create copy destination: %w", err)
	}
	if err := sparseCopy(out, in, fi.Size()); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close copy destination: %w", err)
	}
	return nil
}

func sparseCopy(out, in *os.File, size int64) error {
	if err := cloneFile(out, in); err == nil {
		return nil
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	exts, err := dataExtents(in, size)
	if err != nil {
		return err
	}
	useCFR := true
	buf := make([]byte, copyChunk)
	for _, e := range exts {
		off, end := e.Off, e.Off+e.Len
		for useCFR && off < end {
			n, err := copyFileRange(out, in, off, end-off)
			if err != nil || n == 0 {
				if off == e.Off && cfrUnsupported(err) {
					useCFR = false // fall back to reading and writing
					break
				}
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("copy range at %d: %w", off, err)
			}
			off += int64(n)
		}
		for off < end {
			k := min(end-off, copyChunk)
			if _, err := in.ReadAt(buf[:k], off); err != nil {
				return fmt.Errorf("read at %d: %w", off, err)
			}
			if _, err := out.WriteAt(buf[:k], off); err != nil {
				return fmt.Errorf("write at %d: %w", off, err)
			}
			off += k
		}
	}
	return nil
}
