package bundle

import (
	"hash"
	"sync"
)

// asyncHash hashes on its own goroutine what Write hands it, so that the digest of a large payload is
// computed on another core while the caller decompresses and writes. It holds at most asyncBuffers
// buffers of asyncBufSize bytes. Sum waits for the hashing to finish; stop releases the goroutine of a
// payload abandoned before its end.
type asyncHash struct {
	h    hash.Hash
	work chan []byte
	free chan []byte
	done chan struct{}
	once sync.Once
}

const (
	asyncBuffers = 4
	asyncBufSize = 1 << 20
)

func newAsyncHash(h hash.Hash) *asyncHash {
	a := &asyncHash{h: h, work: make(chan []byte, asyncBuffers), free: make(chan []byte, asyncBuffers), done: make(chan struct{})}
	for range asyncBuffers {
		a.free <- nil // grown on first use, to what the writes need
	}
	go func() {
		defer close(a.done)
		for b := range a.work {
			a.h.Write(b)
			a.free <- b[:0]
		}
	}()
	return a
}

func (a *asyncHash) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		b := <-a.free
		k := min(len(p), asyncBufSize)
		a.work <- append(b[:0], p[:k]...)
		p = p[k:]
	}
	return n, nil
}

// Sum returns the digest of everything written.
func (a *asyncHash) Sum(b []byte) []byte {
	a.stop()
	return a.h.Sum(b)
}

func (a *asyncHash) stop() {
	a.once.Do(func() { close(a.work) })
	<-a.done
}
