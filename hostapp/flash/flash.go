// Package flash writes a disk image to a card, a USB stick or a file: only its mapped blocks, decompressed
// on the fly, then verified by reading them back.
package flash

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"

	"github.com/hostos/hostos/partition/disk"
)

// blockSize is the unit of the maps Flash finds itself (holes, zero blocks).
const blockSize = 4096

// bufSize is the unit of reading, writing and hashing; bufs is how many are in flight.
const (
	bufSize = 4 << 20
	bufs    = 4
)

// Result says what Flash did.
type Result struct {
	Image       string `json:"image"`
	Device      string `json:"device"`
	Compression string `json:"compression,omitempty"`
	// Map is where the mapped blocks came from: "bmap" (the file named in BmapFile), "holes" (the raw
	// image's data extents) or "zeros" (the compressed image's blocks that are not all zero).
	Map       string `json:"map"`
	BmapFile  string `json:"bmap_file,omitempty"`
	ImageSize int64  `json:"image_size"`
	Written   int64  `json:"written_bytes"`
	Ranges    int    `json:"ranges"`
	Verified  bool   `json:"verified"`
	// ReadBack says how the verify pass got past the page cache.
	ReadBack string `json:"read_back,omitempty"`
}

// Option is a knob of Flash.
type Option func(*options)

type options struct {
	force, noVerify bool
	bmap            string
	progress        func(step string, done, total int64)
	beforeVerify    func(device string) error
	sys             system
}

// WithForce writes to a device that is mounted, holds the running system or is not removable.
func WithForce() Option { return func(o *options) { o.force = true } }

// WithoutVerify skips reading back what was written.
func WithoutVerify() Option { return func(o *options) { o.noVerify = true } }

// WithBmap uses the block map file path instead of looking for one next to the image.
func WithBmap(path string) Option { return func(o *options) { o.bmap = path } }

// WithProgress receives progress: step "write" or "verify", bytes done and total (total is -1 while
// unknown).
func WithProgress(f func(step string, done, total int64)) Option {
	return func(o *options) { o.progress = f }
}

// WithBeforeVerify runs f between the write and the verify pass, with the device's path: tests plant a
// fault there.
func WithBeforeVerify(f func(device string) error) Option {
	return func(o *options) { o.beforeVerify = f }
}

// WithSystem reads block device facts from sysRoot (instead of /sys) and the mount table from mountinfo
// (instead of /proc/self/mountinfo).
func WithSystem(sysRoot, mountinfo string) Option {
	return func(o *options) { o.sys = system{sysRoot: sysRoot, mountinfo: mountinfo} }
}

// ErrVerify means the read-back of the device did not match the image.
var ErrVerify = errors.New("verify failed")

// span is one mapped range of the image: its bytes and their hash.
type span struct {
	off, n int64
	want   string // the block map's checksum, if any
	sum    []byte
}

// Flash writes the image file image (raw, or zstd, xz, gzip or zip compressed) to device, a block device
// or a regular file (created if absent, then holding exactly the image). Only mapped blocks are written:
// those of the block map next to the image (IMAGE.bmap, or the name without its compression suffix plus
// .bmap), else a raw image's data extents, else a compressed image's blocks that are not all zero. On a
// block device, what lies outside the mapped blocks keeps its old content. Then, unless WithoutVerify,
// the device is synced, its cached pages dropped (fadvise DONTNEED, and BLKFLSBUF on a block device) and
// the mapped ranges read back and hashed against what was written.
func Flash(ctx context.Context, image, device string, opts ...Option) (Result, error) {
	o := options{sys: system{sysRoot: "/sys", mountinfo: "/proc/self/mountinfo"}}
	for _, opt := range opts {
		opt(&o)
	}
	if o.progress == nil {
		o.progress = func(string, int64, int64) {}
	}
	res := Result{Image: image, Device: device}

	in, err := os.Open(image)
	if err != nil {
		return res, fmt.Errorf("image: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return res, fmt.Errorf("image %s: %w", image, err)
	}
	if !fi.Mode().IsRegular() {
		return res, fmt.Errorf("image %s: not a regular file", image)
	}
	algo, err := disk.Compression(in)
	if err != nil {
		return res, fmt.Errorf("image %s: %w", image, err)
	}
	res.Compression = algo

	bm, bmPath, err := findBmap(image, o.bmap)
	if err != nil {
		return res, err
	}
	var spans []span
	switch {
	case bm != nil:
		res.Map, res.BmapFile, res.ImageSize = "bmap", bmPath, bm.ImageSize
		if algo == "" && fi.Size() != bm.ImageSize {
			return res, fmt.Errorf("image %s: %d bytes, its block map %s says %d", image, fi.Size(), bmPath, bm.ImageSize)
		}
		for _, r := range bm.Ranges {
			off, n := r.Bytes(bm.BlockSize, bm.ImageSize)
			spans = append(spans, span{off: off, n: n, want: r.Checksum})
		}
	case algo == "":
		res.Map, res.ImageSize = "holes", fi.Size()
		exts, err := disk.DataExtents(in, fi.Size())
		if err != nil {
			return res, fmt.Errorf("image %s: %w", image, err)
		}
		for _, r := range disk.BlockRanges(exts, blockSize) {
			off := r[0] * blockSize
			spans = append(spans, span{off: off, n: min((r[1]+1)*blockSize, fi.Size()) - off})
		}
	default:
		res.Map, res.ImageSize = "zeros", -1
	}
	if res.ImageSize == 0 {
		return res, fmt.Errorf("image %s: empty", image)
	}

	out, isDev, err := openTarget(device, image, bmPath, o)
	if err != nil {
		return res, err
	}
	defer out.Close()
	var devSize int64
	if isDev {
		if devSize, _, err = disk.DeviceSize(out); err != nil {
			return res, fmt.Errorf("device %s: %w", device, err)
		}
		if res.ImageSize > 0 && devSize < res.ImageSize {
			return res, fmt.Errorf("device %s: %d bytes, smaller than the image's %d", device, devSize, res.ImageSize)
		}
	}

	newHash := sha256.New
	if bm != nil && bm.ChecksumType == "sha1" {
		newHash = sha1.New
	}
	w := &writer{ctx: ctx, out: out, dev: device, newHash: newHash, progress: o.progress}
	if isDev {
		w.limit = devSize
	}
	frames, err := seekTable(in, fi.Size(), algo, bm)
	if err != nil {
		return res, fmt.Errorf("image %s: %w", image, err)
	}
	switch {
	case algo == "":
		err = w.fromFile(in, spans)
	case frames != nil:
		err = w.fromFrames(in, frames, spans)
	default:
		dec, derr := disk.NewDecompressed(in, fi.Size(), image, nil)
		if derr != nil {
			return res, derr
		}
		if bm != nil {
			err = w.fromStream(dec, spans, res.ImageSize)
		} else {
			err = w.fromStreamZeros(dec)
		}
		dec.Close()
	}
	if err != nil {
		return res, err
	}
	spans = w.spans
	if res.ImageSize < 0 {
		res.ImageSize = w.size
	}
	if res.ImageSize == 0 {
		return res, fmt.Errorf("image %s: empty", image)
	}
	if !isDev {
		if err := out.Truncate(res.ImageSize); err != nil {
			return res, fmt.Errorf("device %s: %w", device, err)
		}
	}
	if err := out.Sync(); err != nil {
		return res, fmt.Errorf("device %s: sync: %w", device, err)
	}
	res.Written, res.Ranges = w.written, len(spans)
	if o.noVerify {
		return res, nil
	}
	if o.beforeVerify != nil {
		if err := o.beforeVerify(device); err != nil {
			return res, err
		}
	}
	res.ReadBack, err = dropCache(out, isDev)
	if err != nil {
		return res, fmt.Errorf("device %s: drop cached pages: %w", device, err)
	}
	if err := verify(ctx, out, device, spans, newHash, o.progress); err != nil {
		return res, err
	}
	res.Verified = true
	return res, nil
}

// findBmap reads the block map at explicit, or the one next to image, if any.
func findBmap(image, explicit string) (*disk.BlockMap, string, error) {
	var cands []string
	if explicit != "" {
		cands = []string{explicit}
	} else {
		cands = append(cands, image+".bmap")
		for _, ext := range []string{".zst", ".zstd", ".xz", ".gz", ".zip"} {
			if base, ok := strings.CutSuffix(image, ext); ok {
				cands = append(cands, base+".bmap")
				if b2, ok := strings.CutSuffix(base, ".img"); ok {
					cands = append(cands, b2+".bmap")
				}
			}
		}
	}
	for _, p := range cands {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) && explicit == "" {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("block map: %w", err)
		}
		fi, err := f.Stat()
		if err == nil && !fi.Mode().IsRegular() {
			err = errors.New("not a regular file")
		}
		var m *disk.BlockMap
		if err == nil {
			m, err = disk.ReadBmap(f)
		}
		f.Close()
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", p, err)
		}
		return m, p, nil
	}
	return nil, "", nil
}

// openTarget opens device for writing: a block device after the safety checks (unless forced), opened
// exclusively so that the kernel refuses one with a mounted filesystem; or a regular file, created or
// emptied, that is neither the image nor its map.
func openTarget(device, image, bmap string, o options) (*os.File, bool, error) {
	if err := refuseRawPath(device); err != nil {
		return nil, false, err
	}
	fi, err := os.Stat(device)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := disk.CheckOutput(device); err != nil {
			return nil, false, err
		}
	case err != nil:
		return nil, false, fmt.Errorf("device %s: %w", device, err)
	case fi.Mode().IsRegular():
		for _, in := range []string{image, bmap} {
			if ii, err := os.Stat(in); in != "" && err == nil && os.SameFile(fi, ii) {
				return nil, false, fmt.Errorf("device %s: is the input %s", device, in)
			}
		}
	case isDevice(fi.Mode()):
		f, err := openDevice(device, fi, o)
		if err != nil {
			return nil, false, err
		}
		return f, true, nil
	default:
		return nil, false, fmt.Errorf("device %s: not a block device or regular file", device)
	}
	f, err := os.OpenFile(device, os.O_RDWR|os.O_CREATE|openNoBlock, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("device %s: %w", device, err)
	}
	if err := disk.TryLock(f, false); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("device %s: %w", device, disk.ErrBusy)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("device %s: %w", device, err)
	}
	return f, false, nil
}

// verify reads the spans back from f and compares their hashes with those taken while writing.
func verify(ctx context.Context, f *os.File, device string, spans []span, newHash func() hash.Hash, progress func(string, int64, int64)) error {
	var total int64
	for _, s := range spans {
		total += s.n
	}
	type piece struct {
		span int
		buf  []byte
		err  error
	}
	full := make(chan piece, bufs)
	free := make(chan []byte, bufs)
	for range bufs {
		free <- make([]byte, bufSize)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(full)
		for i, s := range spans {
			for off := s.off; off < s.off+s.n; {
				var b []byte
				select {
				case b = <-free:
				case <-stop:
					return
				}
				k := min(int64(bufSize), s.off+s.n-off)
				_, err := f.ReadAt(b[:k], off)
				full <- piece{span: i, buf: b[:k], err: err}
				if err != nil {
					return
				}
				off += k
			}
		}
	}()
	var done int64
	progress("verify", 0, total)
	h, cur := newHash(), 0
	finish := func(i int) error {
		if got := h.Sum(nil); string(got) != string(spans[i].sum) {
			s := spans[i]
			return fmt.Errorf("device %s: %w: bytes %d-%d differ from the image", device, ErrVerify, s.off, s.off+s.n-1)
		}
		h.Reset()
		return nil
	}
	for p := range full {
		if p.err != nil {
			return fmt.Errorf("device %s: read back at span %d: %w", device, p.span, p.err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		for cur < p.span {
			if err := finish(cur); err != nil {
				return err
			}
			cur++
		}
		h.Write(p.buf)
		done += int64(len(p.buf))
		progress("verify", done, total)
		free <- p.buf[:cap(p.buf)]
	}
	for ; cur < len(spans); cur++ {
		if err := finish(cur); err != nil {
			return err
		}
	}
	return nil
}
