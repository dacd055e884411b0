package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// short are timeouts small enough for tests; the tests assert errors, never durations.
var short = Options{ConnectTimeout: time.Second, TLSTimeout: 200 * time.Millisecond, HeaderTimeout: 200 * time.Millisecond,
	IdleTimeout: 200 * time.Millisecond, Tries: 3, RetryWait: 10 * time.Millisecond}

// patient are timeouts for tests where nothing stalls, long enough for a loaded machine.
var patient = Options{Tries: 3, RetryWait: 10 * time.Millisecond}

// object is a payload whose bytes are all different enough for a splice to show.
func object(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func get(t *testing.T, o Options, url string) ([]byte, error) {
	t.Helper()
	c := &http.Client{Transport: NewTransport(o)}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// server serves h until the test ends; a handler blocked on release returns then.
func server(t *testing.T, h func(w http.ResponseWriter, r *http.Request, release chan struct{})) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, release) }))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv.URL
}

func TestStallBeforeHeaders(t *testing.T) {
	var requests atomic.Int32
	url := server(t, func(w http.ResponseWriter, r *http.Request, release chan struct{}) {
		requests.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	_, err := get(t, short, url)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "no response headers for 200ms") {
		t.Fatalf("GET of a server that never answers: %v", err)
	}
	if got := requests.Load(); got != int32(short.Tries) {
		t.Errorf("%d requests, want %d tries", got, short.Tries)
	}
}

func TestStallAfterHeaders(t *testing.T) {
	payload := object(1000, 1)
	url := server(t, func(w http.ResponseWriter, r *http.Request, release chan struct{}) {
		w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
		w.Write(payload[:100])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	c := &http.Client{Transport: NewTransport(short)}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "no data for 200ms") {
		t.Fatalf("read from a server that stalls: %v", err)
	}
	// Without validators there is no resume: exactly what came is delivered, nothing more.
	if !bytes.Equal(got, payload[:100]) || !strings.Contains(err.Error(), "no ETag or Last-Modified") {
		t.Errorf("got %d bytes, error %v", len(got), err)
	}
}

// A download that keeps moving, however slowly, is not cut by the idle timeout.
func TestSlowButMoving(t *testing.T) {
	payload := object(12, 2)
	url := server(t, func(w http.ResponseWriter, r *http.Request, release chan struct{}) {
		w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
		for i := range payload {
			w.Write(payload[i : i+1])
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
		}
	})
	o := short
	o.Tries = 1
	got, err := get(t, o, url)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("slow download: %d bytes, %v", len(got), err)
	}
}

// dropping serves payload with validators through http.ServeContent (ranges, If-Range), but the first
// full GET loses its connection after cut bytes.
func dropping(t *testing.T, payload func(try int32) []byte, etag func(try int32) string, cut int) (string, *atomic.Int32) {
	var requests atomic.Int32
	url := server(t, func(w http.ResponseWriter, r *http.Request, release chan struct{}) {
		try := requests.Add(1)
		b := payload(try)
		if e := etag(try); e != "" {
			w.Header().Set("ETag", e)
		}
		if try == 1 {
			w.Header().Set("Accept-Ranges", "bytes")
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b[:cut])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	})
	return url, &requests
}

func TestResume(t *testing.T) {
	payload := object(256<<10, 3)
	url, requests := dropping(t, func(int32) []byte { return payload }, func(int32) string { return `"v1"` }, 100<<10)
	got, err := get(t, patient, url)
	if err != nil {
		t.Fatalf("resumed download: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Errorf("resumed download is not the object: %d bytes of %d", len(got), len(payload))
	}
	if requests.Load() != 2 {
		t.Errorf("%d requests, want 2", requests.Load())
	}
}

func TestResumeRefused(t *testing.T) {
	v1, v2 := object(64<<10, 4), object(64<<10, 5)
	t.Run("object changed", func(t *testing.T) {
		url, _ := dropping(t, func(try int32) []byte {
			if try == 1 {
				return v1
			}
			return v2
		}, func(try int32) string { return fmt.Sprintf(`"v%d"`, min(try, 2)) }, 1000)
		got, err := get(t, patient, url)
		if err == nil || !strings.Contains(err.Error(), "object changed") {
			t.Fatalf("download of an object changed before resuming: %v", err)
		}
		if !bytes.Equal(got, v1[:1000]) {
			t.Errorf("got %d bytes that are not the start of the first object", len(got))
		}
	})
	t.Run("206 of another object", func(t *testing.T) {
		var requests atomic.Int32
		url := server(t, func(w http.ResponseWriter, r *http.Request, release chan struct{}) {
			if requests.Add(1) == 1 {
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Content-Length", fmt.Sprint(len(v1)))
				w.Write(v1[:1000])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
			// A server that ignores If-Range and sends a range of its new object.
			w.Header().Set("ETag", `"v2"`)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 1000-%d/%d", len(v2)-1, len(v2)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(v2[1000:])
		})
		got, err := get(t, patient, url)
		if err == nil || !strings.Contains(err.Error(), "object changed") || !bytes.Equal(got, v1[:1000]) {
			t.Fatalf("splice of two objects: %d bytes, %v", len(got), err)
		}
	})
	t.Run("no range support", func(t *testing.T) {
		var requests atomic.Int32
		url := server(t, func(w http.ResponseWriter, r *http.Request, release chan struct{}) {
			w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
			w.Header().Set("Content-Length", fmt.Sprint(len(v1)))
			if requests.Add(1) == 1 {
				w.Write(v1[:1000])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
			w.Write(v1) // Range ignored: the whole object again
		})
		got, err := get(t, patient, url)
		if err == nil || !strings.Contains(err.Error(), "does not accept range requests") || !bytes.Equal(got, v1[:1000]) {
			t.Fatalf("resume from a server without ranges: %d bytes, %v", len(got), err)
		}
	})
	t.Run("drops every time", func(t *testing.T) {
		var requests atomic.Int32
		url := server(t, func(w http.ResponseWriter, r *http.Request, release chan struct{}) {
			requests.Add(1)
			w.Header().Set("ETag", `"v1"`)
			http.ServeContent(&dropWriter{ResponseWriter: w, left: 1000}, r, "", time.Time{}, bytes.NewReader(v1))
		})
		got, err := get(t, patient, url)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("tried %d times", patient.Tries)) {
			t.Fatalf("download from a server that always drops: %v", err)
		}
		if int(requests.Load()) != patient.Tries || !bytes.Equal(got, v1[:len(got)]) {
			t.Errorf("%d requests, %d bytes (a prefix: %v)", requests.Load(), len(got), bytes.Equal(got, v1[:len(got)]))
		}
	})
}

// dropWriter aborts the connection after left body bytes.
type dropWriter struct {
	http.ResponseWriter
	left int
}

func (d *dropWriter) Write(b []byte) (int, error) {
	if len(b) >= d.left {
		d.ResponseWriter.Write(b[:d.left])
		d.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	d.left -= len(b)
	return d.ResponseWriter.Write(b)
}

func TestRetryStatus(t *testing.T) {
	var requests atomic.Int32
	url := server(t, func(w http.ResponseWriter, r *http.Request, release chan struct{}) {
		if requests.Add(1) == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	})
	got, err := get(t, short, url)
	if err != nil || string(got) != "ok" || requests.Load() != 2 {
		t.Fatalf("after a 503: %q, %v, %d requests", got, err, requests.Load())
	}
	requests.Store(0)
	o := short
	o.Tries = 1
	if _, err := get(t, o, url); err == nil || requests.Load() != 1 {
		t.Fatalf("with one try, a 503: %v after %d requests", err, requests.Load())
	}
}

// A TCP server that accepts and never speaks TLS fails the handshake in time.
func TestTLSHandshakeStall(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	o := short
	o.Tries = 1
	_, err = get(t, o, "https://"+ln.Addr().String()+"/x")
	if err == nil || !strings.Contains(err.Error(), "TLS handshake timeout") {
		t.Fatalf("GET from a silent TLS server: %v", err)
	}
}

// Cancelling the context ends a stalled read at once, with the context's error.
func TestCancel(t *testing.T) {
	url := server(t, func(w http.ResponseWriter, r *http.Request, release chan struct{}) {
		w.Header().Set("ETag", `"v1"`)
		w.Write([]byte("x"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	o := short
	o.IdleTimeout = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Transport: NewTransport(o)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
}

func TestParseContentRange(t *testing.T) {
	for s, want := range map[string][2]int64{"bytes 10-19/20": {10, 20}, "bytes 0-0/*": {0, -1}} {
		start, total, err := parseContentRange(s)
		if err != nil || start != want[0] || total != want[1] {
			t.Errorf("%q: %d %d %v", s, start, total, err)
		}
	}
	for _, s := range []string{"", "bytes */20", "items 1-2/3", "bytes -1-2/3", "bytes 1-2/x"} {
		if _, _, err := parseContentRange(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}
