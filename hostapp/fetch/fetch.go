// Package fetch is the one HTTP transport of updates and preloads, so that no server can hold them: it
// bounds connecting, the TLS handshake, the wait for response headers and every wait for body bytes,
// retries a bounded number of times, and resumes a dropped download with a range request only when the
// server shows it is the same object.
//
// It lives under hostapp because the update sources and preload, both hostapp flows, are its only users;
// hostapp/container hands the same transport to go-containerregistry's remote.
package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options bound how long a server may keep a transfer waiting. Zero fields take the defaults.
type Options struct {
	// ConnectTimeout bounds a TCP connect (default 30s).
	ConnectTimeout time.Duration
	// TLSTimeout bounds a TLS handshake (default 30s).
	TLSTimeout time.Duration
	// HeaderTimeout bounds the wait for response headers once the request is sent (default 30s).
	HeaderTimeout time.Duration
	// IdleTimeout bounds each wait for body bytes: it starts again with every Read, so a slow download
	// that keeps moving goes on, while a server that sends nothing for this long fails it (default 30s).
	IdleTimeout time.Duration
	// Tries is how many times a request, or a dropped download, is tried in all (default 4); 1: no retry.
	Tries int
	// RetryWait is the pause before the first retry, doubled before each next one (default 1s).
	RetryWait time.Duration
	// RootCAs, when set, are the only certificate authorities trusted; nil: the system's.
	RootCAs *x509.CertPool
}

// Defaults of Options.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultTries     = 4
	DefaultRetryWait = time.Second
)

// ErrTimeout is wrapped by the errors of a server that kept a transfer waiting longer than allowed.
var ErrTimeout = errors.New("timed out")

func (o Options) withDefaults() Options {
	for _, d := range []*time.Duration{&o.ConnectTimeout, &o.TLSTimeout, &o.HeaderTimeout, &o.IdleTimeout} {
		if *d <= 0 {
			*d = DefaultTimeout
		}
	}
	if o.Tries <= 0 {
		o.Tries = DefaultTries
	}
	if o.RetryWait <= 0 {
		o.RetryWait = DefaultRetryWait
	}
	return o
}

// timeoutError says what a server failed to send in time.
type timeoutError struct {
	what string
	d    time.Duration
}

func (e *timeoutError) Error() string        { return fmt.Sprintf("no %s for %s", e.what, e.d) }
func (e *timeoutError) Is(target error) bool { return target == ErrTimeout }

// NewTransport returns an http.RoundTripper with o's timeouts and retries. GET responses with status 200
// (to requests without a Range header) come with a body that resumes by itself after a dropped
// connection or a stall, by a range request whose If-Range holds the first response's strong ETag or
// Last-Modified; a server that answers with a changed object, or without range support, fails the read
// with an error saying so, and nothing of two objects is ever spliced. Responses are never
// transparently decompressed, so that byte offsets are those of the object.
func NewTransport(o Options) http.RoundTripper {
	o = o.withDefaults()
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	base := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
			defer cancel()
			c, err := dialer.DialContext(dctx, network, addr)
			if err != nil && ctx.Err() == nil && errors.Is(dctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("connect to %s: %w", addr, &timeoutError{"answer", o.ConnectTimeout})
			}
			return c, err
		},
		TLSHandshakeTimeout:   o.TLSTimeout,
		TLSClientConfig:       &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		DisableCompression:    true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &transport{o: o, base: base}
}

type transport struct {
	o    Options
	base *http.Transport
}

// RoundTrip sends req, retrying idempotent requests on network errors, timeouts and 408, 429 and 5xx.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	idempotent := (req.Method == http.MethodGet || req.Method == http.MethodHead) && req.Body == nil
	wait := t.o.RetryWait
	for try := 1; ; try++ {
		resp, err := t.once(req)
		if !idempotent || try >= t.o.Tries || !retryable(req.Context(), resp, err) {
			if err != nil {
				return nil, err
			}
			if req.Method == http.MethodGet && resp.StatusCode == http.StatusOK && req.Header.Get("Range") == "" {
				resp.Body = newResumer(t, req, resp, try)
			}
			return resp, nil
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if err := sleep(req.Context(), wait); err != nil {
			return nil, err
		}
		wait *= 2
	}
}

// retryable tells a failure worth another try: not a cancelled request, not a certificate problem.
func retryable(ctx context.Context, resp *http.Response, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		var cv *tls.CertificateVerificationError
		var ua x509.UnknownAuthorityError
		var hn x509.HostnameError
		return !errors.As(err, &cv) && !errors.As(err, &ua) && !errors.As(err, &hn)
	}
	switch resp.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// once sends req one time under the header timeout and gives the response an idle-read timeout.
func (t *transport) once(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	var headerLate atomic.Bool
	headerTimer := time.AfterFunc(time.Hour, func() { headerLate.Store(true); cancel() })
	headerTimer.Stop()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { headerTimer.Reset(t.o.HeaderTimeout) },
	})
	resp, err := t.base.RoundTrip(req.Clone(ctx))
	headerTimer.Stop()
	if err != nil {
		cancel()
		if headerLate.Load() && req.Context().Err() == nil {
			return nil, &timeoutError{"response headers", t.o.HeaderTimeout}
		}
		return nil, err
	}
	resp.Body = newIdleBody(resp.Body, cancel, req.Context(), t.o.IdleTimeout)
	return resp, nil
}

// idleBody fails a Read that waits longer than d for a byte, by cancelling its request.
type idleBody struct {
	rc     io.ReadCloser
	cancel context.CancelFunc
	parent context.Context
	d      time.Duration
	timer  *time.Timer
	late   atomic.Bool
}

func newIdleBody(rc io.ReadCloser, cancel context.CancelFunc, parent context.Context, d time.Duration) *idleBody {
	b := &idleBody{rc: rc, cancel: cancel, parent: parent, d: d}
	b.timer = time.AfterFunc(time.Hour, func() { b.late.Store(true); cancel() })
	b.timer.Stop()
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.late.Load() {
		return 0, &timeoutError{"data", b.d}
	}
	b.timer.Reset(b.d)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF && b.late.Load() && b.parent.Err() == nil {
		err = &timeoutError{"data", b.d}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}

// resumer is the body of a GET: it continues a dropped transfer with range requests.
type resumer struct {
	t      *transport
	req    *http.Request
	mu     sync.Mutex // guards body
	body   io.ReadCloser
	closed atomic.Bool
	off    int64 // bytes delivered so far
	total  int64 // the object's length, -1 when the server did not say
	// The first response's validators and range support.
	etag, lastModified, acceptRanges string
	tries                            int
	pending                          error
	failed                           error
}

func newResumer(t *transport, req *http.Request, resp *http.Response, tries int) *resumer {
	return &resumer{
		t: t, req: req, body: resp.Body, total: resp.ContentLength, tries: tries,
		etag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified"),
		acceptRanges: strings.ToLower(strings.TrimSpace(resp.Header.Get("Accept-Ranges"))),
	}
}

func (r *resumer) Read(p []byte) (int, error) {
	for {
		if r.failed != nil {
			return 0, r.failed
		}
		if r.pending == nil {
			n, err := r.current().Read(p)
			r.off += int64(n)
			if err == nil || err == io.EOF {
				return n, err
			}
			if n > 0 {
				// Deliver what came; resume on the next Read.
				r.pending = err
				return n, nil
			}
			r.pending = err
		}
		cause := r.pending
		r.pending = nil
		if r.req.Context().Err() != nil || r.closed.Load() {
			r.failed = cause
			continue
		}
		r.failed = r.resume(cause)
	}
}

func (r *resumer) current() io.ReadCloser {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.body
}

// swap makes rc the body, unless the resumer was closed meanwhile.
func (r *resumer) swap(rc io.ReadCloser) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		rc.Close()
		return errors.New("closed")
	}
	r.body = rc
	return nil
}

// at is "byte N" or "byte N of M" for messages.
func (r *resumer) at() string {
	if r.total >= 0 {
		return fmt.Sprintf("byte %d of %d", r.off, r.total)
	}
	return fmt.Sprintf("byte %d", r.off)
}

// resume replaces the broken body with the rest of the same object, or says why it cannot.
func (r *resumer) resume(cause error) error {
	validator := r.etag
	if validator == "" || strings.HasPrefix(validator, "W/") {
		validator = r.lastModified
	}
	switch {
	case r.tries >= r.t.o.Tries:
		return fmt.Errorf("at %s: %w (tried %d times)", r.at(), cause, r.tries)
	case r.acceptRanges == "none":
		return fmt.Errorf("at %s: %w; cannot resume: the server does not accept range requests", r.at(), cause)
	case validator == "":
		return fmt.Errorf("at %s: %w; cannot resume: the server names no ETag or Last-Modified to check the object against", r.at(), cause)
	}
	r.current().Close()
	wait := r.t.o.RetryWait << min(r.tries-1, 10)
	for {
		if err := sleep(r.req.Context(), wait); err != nil {
			return err
		}
		wait *= 2
		r.tries++
		req := r.req.Clone(r.req.Context())
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", r.off))
		req.Header.Set("If-Range", validator)
		resp, err := r.t.once(req)
		if err == nil && resp.StatusCode == http.StatusPartialContent {
			if err := r.sameObject(resp); err != nil {
				resp.Body.Close()
				return err
			}
			return r.swap(resp.Body)
		}
		if err == nil {
			resp.Body.Close()
		}
		if !retryable(r.req.Context(), resp, err) || r.tries >= r.t.o.Tries {
			switch {
			case err != nil:
				return fmt.Errorf("at %s: %w; resuming: %w (tried %d times)", r.at(), cause, err, r.tries)
			case resp.StatusCode == http.StatusOK && r.changed(resp):
				return fmt.Errorf("at %s: %w; not resumed: the object changed on the server (not splicing two objects)", r.at(), cause)
			case resp.StatusCode == http.StatusOK:
				return fmt.Errorf("at %s: %w; cannot resume: the server does not accept range requests", r.at(), cause)
			}
			return fmt.Errorf("at %s: %w; resuming: HTTP %s", r.at(), cause, resp.Status)
		}
	}
}

// changed tells a full response whose validators differ from the first response's.
func (r *resumer) changed(resp *http.Response) bool {
	e, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	return e != "" && r.etag != "" && e != r.etag || lm != "" && r.lastModified != "" && lm != r.lastModified ||
		resp.ContentLength >= 0 && r.total >= 0 && resp.ContentLength != r.total
}

// sameObject checks that a 206 continues the object at the offset reached: its range starts there, its
// length and validators are the first response's.
func (r *resumer) sameObject(resp *http.Response) error {
	start, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err != nil {
		return fmt.Errorf("at %s: resuming: %w", r.at(), err)
	}
	if start != r.off {
		return fmt.Errorf("at %s: resuming: the server sent a range from byte %d", r.at(), start)
	}
	if r.changed(&http.Response{Header: resp.Header, ContentLength: -1}) || total >= 0 && r.total >= 0 && total != r.total {
		return fmt.Errorf("at %s: not resumed: the object changed on the server (not splicing two objects)", r.at())
	}
	return nil
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*": -1).
func parseContentRange(s string) (start, total int64, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	rng, tot, ok2 := strings.Cut(rest, "/")
	first, _, ok3 := strings.Cut(rng, "-")
	if !ok || !ok2 || !ok3 {
		return 0, 0, fmt.Errorf("Content-Range %q: not a byte range", s)
	}
	if start, err = strconv.ParseInt(first, 10, 64); err != nil || start < 0 {
		return 0, 0, fmt.Errorf("Content-Range %q: bad start", s)
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total < 0 {
			return 0, 0, fmt.Errorf("Content-Range %q: bad length", s)
		}
	}
	return start, total, nil
}

// Close may be called while a Read waits: the Read then fails.
func (r *resumer) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed.Store(true)
	return r.body.Close()
}
