package bundle

import (
	"bytes"
	"io"
	"testing"
)

// FuzzNewReader reads arbitrary bytes as a bundle: no panic, no hang, and whatever verifies reads back.
func FuzzNewReader(f *testing.F) {
	pub, priv := testKey(f, 1)
	for _, boot := range []bool{false, true} {
		fx := smallWindowed(f, boot)
		f.Add(fx.write(f, nil), false)
		f.Add(fx.write(f, priv), true)
	}
	f.Add(deltaBundleBytes(f), false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, b []byte, keys bool) {
		var opts []ReadOption
		if keys {
			opts = append(opts, WithKeys(pub))
		}
		r, err := NewReader(bytes.NewReader(b), opts...)
		if err != nil {
			return
		}
		m := r.Metadata()
		if err := m.validate(); err != nil {
			t.Fatalf("NewReader accepted invalid metadata: %v", err)
		}
		rd, err := r.Rootfs()
		if err != nil {
			return
		}
		// Bound the work: a tiny zstd input can claim a huge image.
		n, err := io.Copy(io.Discard, io.LimitReader(rd, 64<<20))
		if err != nil || n == 64<<20 {
			return
		}
		want := m.Rootfs.ImageSize
		if m.Delta != nil || m.Chunks != nil {
			want = m.Rootfs.Size // a delta member or a chunk index is yielded as stored
		}
		if n != want {
			t.Fatalf("rootfs read to its end with %d bytes, metadata says %d", n, want)
		}
		_ = r.Boot(func(name string, size int64, rd io.Reader) error {
			_, err := io.Copy(io.Discard, io.LimitReader(rd, 1<<20))
			return err
		})
	})
}
