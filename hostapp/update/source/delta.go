package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/hostapp/delta"
)

// ErrNoBase means a delta bundle came without the running slot to apply it to (Options.Base).
var ErrNoBase = errors.New("a delta bundle needs the running slot as its base")

// openDelta opens the root filesystem of a delta bundle br (metadata m) whose reader stands at the delta
// member. The member is small: it is stored in o.TempDir (an unlinked file) and checked against the
// metadata; then the running slot o.Base is checked to be the base the delta names (ErrWrongBase,
// naming the version it needs) and every chunk of the delta against the index (bundle.ErrCorrupt), all
// before Open returns, so that nothing is written for a delta that cannot apply. Payload.Image then
// streams the new image, assembled from the base's chunks (each hashed again) and the delta's.
func openDelta(ctx context.Context, what string, br *bundle.Reader, m bundle.Metadata, closeFn func() error, o Options) (*Payload, error) {
	fail := func(err error) (*Payload, error) {
		closeFn()
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	if o.Base == nil || o.BaseSize <= 0 {
		return fail(fmt.Errorf("%w (it updates %s)", ErrNoBase, m.Delta.BaseVersion))
	}
	// The index and the new chunks: never more than the image, the index and compression's overhead.
	if limit := m.Rootfs.ImageSize + m.Rootfs.ImageSize/64 + 16*mib; m.Rootfs.Size > limit {
		return fail(fmt.Errorf("%w: delta member of %d bytes for an image of %d", bundle.ErrCorrupt, m.Rootfs.Size, m.Rootfs.ImageSize))
	}
	f, err := os.CreateTemp(o.TempDir, ".hostos-delta-")
	if err != nil {
		return fail(err)
	}
	os.Remove(f.Name()) // anonymous: nothing is left behind whatever happens
	failClose := func(err error) (*Payload, error) {
		f.Close()
		return fail(err)
	}
	img, err := br.Rootfs()
	if err != nil {
		return failClose(err)
	}
	cr := &countingReader{r: img, fn: func(done int64) { o.Progress("download delta", done, m.Rootfs.Size) }}
	n, err := io.CopyBuffer(f, cr, make([]byte, 1<<20))
	if err != nil {
		return failClose(err)
	}
	if _, err := bundle.CheckDelta(m, f, n); err != nil {
		return failClose(err)
	}
	base, err := bundle.Unlabelled(o.Base)
	if err != nil {
		return failClose(fmt.Errorf("%w: it needs version %s, the running slot holds no ext4 filesystem: %w", delta.ErrWrongBase, m.Delta.BaseVersion, err))
	}
	return applyDelta(ctx, what, br, m, f, n, base, o.BaseSize, m.Delta.BaseVersion, n, closeFn, o)
}

// applyDelta checks the delta in f (n bytes) against the running slot o.Base (delta.Prepare: nothing is
// written for a delta that cannot apply) and returns the payload that streams the new image. f and
// closeFn are released by the payload's Close, or before an error returns.
func applyDelta(ctx context.Context, what string, br *bundle.Reader, m bundle.Metadata, f *os.File, n int64, base io.ReaderAt, baseSize int64, baseVersion string, transferred int64, closeFn func() error, o Options) (*Payload, error) {
	closeAll := func() error {
		f.Close()
		return closeFn()
	}
	failClose := func(err error) (*Payload, error) {
		closeAll()
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	o.Progress("check running slot", 0, baseSize)
	pl, err := delta.Prepare(ctx, base, baseSize, f, n)
	if err != nil {
		if errors.Is(err, delta.ErrCorrupt) {
			err = fmt.Errorf("%w: %w", bundle.ErrCorrupt, err)
		}
		return failClose(err)
	}
	o.Progress("check running slot", baseSize, baseSize)
	// The slot writer reads back what it wrote and checks it against the image's digest from the signed
	// metadata (Payload.ImageSHA256) before anything can boot it: a base chunk that changed since Prepare
	// is caught there, so it is not hashed a second time here.
	pl.NoRecheck = true
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := pl.WriteTo(ctx, pw, nil)
		if errors.Is(err, delta.ErrCorrupt) {
			err = fmt.Errorf("%w: %w", bundle.ErrCorrupt, err)
		}
		pw.CloseWithError(err)
	}()
	p := &Payload{
		DeviceType: m.DeviceType, Arch: m.Arch, Version: m.Version, Size: m.Rootfs.ImageSize,
		Image: pr, ImageSHA256: m.Rootfs.ImageSHA256, ImageChunkSize: m.Rootfs.ImageChunkSize,
		ImageChunksSHA256: m.Rootfs.ImageChunksSHA256, Signed: len(o.Keys) > 0,
		BaseVersion: baseVersion, Transferred: transferred,
		Close: onceClose(func() error {
			pr.CloseWithError(errors.New("update source closed"))
			wg.Wait()
			return closeAll()
		}),
	}
	if m.Boot != nil {
		p.Boot = br.Boot
	}
	return p, nil
}
