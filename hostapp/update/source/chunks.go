package source

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"

	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/hostapp/delta"
	"github.com/hostos/hostos/hostapp/fetch"
	"github.com/hostos/hostos/rootfs/ext4"
)

// openChunked opens the root filesystem of a chunked bundle br (metadata m), read from the URL o.url,
// whose reader stands at the chunk index. The running slot o.Base is split with the index's chunk
// sizes; every chunk of the new image it lacks is fetched from the store next to the bundle (one file
// per chunk, named by its sha256, through hostapp/fetch: timeouts, retries, resume) and checked, all
// before Open returns; the chunks are then put together as a delta against the running slot and applied
// as a delta bundle's are. Payload.Transferred counts the bundle's bytes before its payload, the index
// and the chunks fetched.
func openChunked(ctx context.Context, what string, br *bundle.Reader, m bundle.Metadata, closeFn func() error, o Options) (*Payload, error) {
	fail := func(err error) (*Payload, error) {
		closeFn()
		return nil, fmt.Errorf("update %s: %w", what, err)
	}
	if o.url == "" {
		return fail(errors.New("a chunked bundle is read from its http(s) URL, with its chunk store next to it"))
	}
	if o.Base == nil || o.BaseSize <= 0 {
		return fail(fmt.Errorf("%w (its chunks are taken from there)", ErrNoBase))
	}
	// The index: 40 bytes per chunk of at least 16 KiB.
	if limit := m.Rootfs.ImageSize/(16<<10)*40 + 1<<20; m.Rootfs.Size > limit {
		return fail(fmt.Errorf("%w: chunk index of %d bytes for an image of %d", bundle.ErrCorrupt, m.Rootfs.Size, m.Rootfs.ImageSize))
	}
	rd, err := br.Rootfs()
	if err != nil {
		return fail(err)
	}
	ib, err := io.ReadAll(rd)
	if err != nil {
		return fail(err)
	}
	var idx delta.Index
	if err := idx.UnmarshalBinary(ib); err != nil {
		return fail(fmt.Errorf("%w: %w", bundle.ErrCorrupt, err))
	}
	if idx.Size != m.Rootfs.ImageSize {
		return fail(fmt.Errorf("%w: the chunk index covers %d bytes, metadata says %d", bundle.ErrCorrupt, idx.Size, m.Rootfs.ImageSize))
	}
	store, err := storeURL(o.url, m.Chunks.Store)
	if err != nil {
		return fail(err)
	}

	// The running slot's chunks (none when it holds no ext4 filesystem).
	h := delta.Header{Index: idx, BaseVersion: "the running slot"}
	have := map[[32]byte]bool{}
	var base io.ReaderAt = emptyBase{}
	if b, err := bundle.Unlabelled(o.Base); err == nil {
		if size, err := ext4.FilesystemSize(o.Base, 0); err == nil && size <= o.BaseSize {
			whole := sha256.New()
			o.Progress("read running slot", 0, size)
			base = b
			err := delta.Split(&ctxReader{ctx: ctx, r: io.NewSectionReader(b, 0, size)}, idx.Params, func(c delta.Chunk, data []byte) error {
				have[c.Sum] = true
				whole.Write(data)
				o.Progress("read running slot", c.Off+c.Len, size)
				return nil
			})
			if err != nil {
				return fail(fmt.Errorf("read running slot: %w", err))
			}
			h.BaseSize = size
			copy(h.BaseSum[:], whole.Sum(nil))
		}
	}
	if h.BaseSize == 0 {
		have, base = map[[32]byte]bool{}, emptyBase{}
		h.BaseSum = sha256.Sum256(nil)
	}

	// The chunks it lacks, fetched once each into an unlinked file.
	got, err := os.CreateTemp(o.TempDir, ".hostos-chunks-")
	if err != nil {
		return fail(err)
	}
	os.Remove(got.Name())
	at := map[[32]byte]int64{}
	var need, fetched int64
	for _, c := range idx.Chunks {
		if !have[c.Sum] {
			if _, ok := at[c.Sum]; !ok {
				at[c.Sum] = -1
				need += c.Len
			}
		}
	}
	client := &http.Client{Transport: fetch.NewTransport(o.Fetch)}
	buf := make([]byte, idx.Params.Max+1)
	var off int64
	for _, c := range idx.Chunks {
		if have[c.Sum] || at[c.Sum] >= 0 {
			continue
		}
		n, err := fetchChunk(ctx, client, store, c, buf)
		fetched += n
		if err == nil {
			_, err = got.WriteAt(buf[:c.Len], off)
		}
		if err != nil {
			got.Close()
			return fail(err)
		}
		at[c.Sum] = off
		off += c.Len
		o.Progress("fetch chunks", off, need)
	}

	// Put together as a delta against the running slot, then applied as a delta bundle is.
	d, err := os.CreateTemp(o.TempDir, ".hostos-delta-")
	if err != nil {
		got.Close()
		return fail(err)
	}
	os.Remove(d.Name())
	i := 0
	bw := bufio.NewWriterSize(d, 1<<20)
	err = delta.Compose(bw, h, func() ([]byte, error) {
		for ; i < len(idx.Chunks); i++ {
			c := idx.Chunks[i]
			if have[c.Sum] {
				continue
			}
			i++
			if _, err := got.ReadAt(buf[:c.Len], at[c.Sum]); err != nil {
				return nil, err
			}
			return buf[:c.Len], nil
		}
		return nil, io.EOF
	})
	got.Close()
	if err == nil {
		err = bw.Flush()
	}
	var size int64
	if err == nil {
		size, err = d.Seek(0, io.SeekEnd)
	}
	if err != nil {
		d.Close()
		return fail(fmt.Errorf("chunks: %w", err))
	}
	return applyDelta(ctx, what, br, m, d, size, base, h.BaseSize, "the running slot", int64(len(ib))+fetched, closeFn, o)
}

// emptyBase is a base of no bytes, for a slot that holds no filesystem to take chunks from.
type emptyBase struct{}

func (emptyBase) ReadAt(p []byte, off int64) (int, error) { return 0, io.EOF }

// storeURL is the chunk store's URL: the directory store next to the bundle at ref.
func storeURL(ref, store string) (string, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("chunk store: %w", err)
	}
	u.Path = path.Join(path.Dir(u.Path), store) + "/"
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String(), nil
}

// fetchChunk downloads chunk c from store into buf and checks its size and sha256; it returns the bytes
// received.
func fetchChunk(ctx context.Context, client *http.Client, store string, c delta.Chunk, buf []byte) (int64, error) {
	name := hex.EncodeToString(c.Sum[:])
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, store+name, nil)
	if err != nil {
		return 0, fmt.Errorf("chunk %s: %w", name, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("chunk %s: %w", name, scrubURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("chunk %s: HTTP %s", name, resp.Status)
	}
	n, err := io.ReadFull(&ctxReader{ctx: ctx, r: resp.Body}, buf[:c.Len+1])
	switch {
	case err == nil:
		return int64(n), fmt.Errorf("%w: chunk %s: longer than the %d bytes the index says", bundle.ErrCorrupt, name, c.Len)
	case !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF):
		return int64(n), fmt.Errorf("chunk %s: %w", name, err)
	case int64(n) != c.Len:
		return int64(n), fmt.Errorf("%w: chunk %s: %d bytes, the index says %d", bundle.ErrCorrupt, name, n, c.Len)
	case sha256.Sum256(buf[:n]) != c.Sum:
		return int64(n), fmt.Errorf("%w: chunk %s: sha256 mismatch", bundle.ErrCorrupt, name)
	}
	return int64(n), nil
}
