package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hostos/hostos/hostapp/delta"
)

// chunkPayload splits the image (size bytes) into content-defined chunks, adds each one the store
// directory lacks as a file named by its sha256, and writes the chunk index to dst, described as the
// root filesystem payload of a chunked bundle. A chunk file is written beside its name and renamed into
// place, so the store never holds a partial chunk under a chunk's name.
func chunkPayload(ctx context.Context, img io.Reader, size int64, store string, dst io.Writer, progress func(done, total int64)) (Payload, error) {
	if err := os.MkdirAll(store, 0o755); err != nil {
		return Payload{}, fmt.Errorf("chunk store: %w", err)
	}
	image := &digestWriter{h: sha256.New()}
	chunks := NewChunkDigest(DefaultImageChunkSize)
	idx := delta.Index{Params: delta.DefaultParams, Size: size}
	err := delta.Split(&ctxReader{ctx: ctx, r: io.LimitReader(img, size), count: func(int) {}}, delta.DefaultParams, func(c delta.Chunk, data []byte) error {
		image.Write(data)
		chunks.Write(data)
		idx.Chunks = append(idx.Chunks, c)
		progress(c.Off+c.Len, size)
		return addChunk(store, c.Sum, data)
	})
	if err != nil {
		return Payload{}, err
	}
	if image.n != size {
		return Payload{}, fmt.Errorf("image ends after %d of %d bytes", image.n, size)
	}
	ib, _ := idx.MarshalBinary()
	if _, err := dst.Write(ib); err != nil {
		return Payload{}, fmt.Errorf("write chunk index: %w", err)
	}
	sum := sha256.Sum256(ib)
	return Payload{Name: IndexName, Filesystem: FilesystemExt4, Compression: CompressionIndex,
		Size: int64(len(ib)), SHA256: hex.EncodeToString(sum[:]), ImageSize: size, ImageSHA256: image.sum(),
		ImageChunkSize: DefaultImageChunkSize, ImageChunksSHA256: chunks.Sum()}, nil
}

// addChunk writes data into store as the file named by sum, unless a file of that name and size is
// there already (a store is shared by the versions that go through it).
func addChunk(store string, sum [32]byte, data []byte) error {
	name := filepath.Join(store, hex.EncodeToString(sum[:]))
	if fi, err := os.Stat(name); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(data)) {
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("chunk store: %w", err)
	}
	f, err := os.CreateTemp(store, ".chunk-*")
	if err != nil {
		return fmt.Errorf("chunk store: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("chunk store: %w", err)
	}
	return nil
}
