package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
)

// ChunkDigest computes a chunked image digest (Payload.ImageChunksSHA256) of bytes written in order.
// Writers that have the chunks at hand on several cores combine per-chunk digests with ChunksRoot
// instead.
type ChunkDigest struct {
	size  int64
	cur   hash.Hash
	n     int64
	roots hash.Hash
}

// NewChunkDigest starts a chunked digest over chunks of size bytes.
func NewChunkDigest(size int64) *ChunkDigest {
	return &ChunkDigest{size: size, cur: sha256.New(), roots: sha256.New()}
}

// Write adds p to the digest.
func (c *ChunkDigest) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(int64(len(p)), c.size-c.n)
		c.cur.Write(p[:k])
		c.n += k
		p = p[k:]
		if c.n == c.size {
			c.roots.Write(c.cur.Sum(nil))
			c.cur.Reset()
			c.n = 0
		}
	}
	return n, nil
}

// Sum returns the digest in lower-case hex.
func (c *ChunkDigest) Sum() string {
	if c.n > 0 {
		c.roots.Write(c.cur.Sum(nil))
		c.cur.Reset()
		c.n = 0
	}
	return hex.EncodeToString(c.roots.Sum(nil))
}

// ChunksRoot combines the per-chunk SHA-256 digests, in order, into the chunked image digest.
func ChunksRoot(digests [][sha256.Size]byte) string {
	h := sha256.New()
	for _, d := range digests {
		h.Write(d[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}
