package health

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Result is the outcome of one check.
type Result struct {
	Name     string
	Passed   bool
	Attempts int    // attempts started
	Err      string // why the check failed, with the tail of the last attempt's output; empty when it passed
}

// outputLimit is how much of an attempt's combined stdout and stderr is kept.
const outputLimit = 4 << 10

// outputGrace bounds the wait for the output pipe to close once the process group is gone: a process that
// left the group (setsid) may still hold it.
const outputGrace = time.Second

// Run runs the checks in order and stops at the first that fails. Failed checks are Results, not errors; the
// error is for an invalid check list or ctx ending, and then the Results so far come with it, the last one
// not passed. log, when not nil, gets one line per attempt. An empty list is healthy: no Results, no error.
func Run(ctx context.Context, cs Checks, log func(string)) ([]Result, error) {
	if log == nil {
		log = func(string) {}
	}
	for i, c := range cs {
		if _, err := c.validate(); err != nil {
			return nil, fmt.Errorf("health checks: check %d: %w", i+1, err)
		}
	}
	results := make([]Result, 0, len(cs))
	for _, c := range cs {
		r, err := runCheck(ctx, c, log)
		results = append(results, r)
		if err != nil {
			return results, err
		}
		if !r.Passed {
			break
		}
	}
	return results, nil
}

// runCheck attempts c until it has passed Count times in a row or failed more than Retries times.
func runCheck(ctx context.Context, c Check, log func(string)) (Result, error) {
	r := Result{Name: c.Name}
	passes, failures := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			r.Err = "interrupted: " + err.Error()
			return r, fmt.Errorf("health check %q: %w", c.Name, err)
		}
		r.Attempts++
		out, err := attempt(ctx, c)
		if err != nil && ctx.Err() != nil {
			r.Err = "interrupted: " + ctx.Err().Error()
			return r, fmt.Errorf("health check %q: attempt %d: %w", c.Name, r.Attempts, ctx.Err())
		}
		if err == nil {
			passes++
			log(fmt.Sprintf("health check %q: attempt %d passed (%d of %d in a row)", c.Name, r.Attempts, passes, c.Count))
			if passes >= c.Count {
				r.Passed = true
				return r, nil
			}
		} else {
			passes = 0
			failures++
			log(fmt.Sprintf("health check %q: attempt %d failed: %v (failure %d, %d tolerated)", c.Name, r.Attempts, err, failures, c.Retries))
			if failures > c.Retries {
				r.Err = err.Error()
				if out != "" {
					r.Err += "\n" + out
				}
				return r, nil
			}
		}
		if c.Interval > 0 {
			t := time.NewTimer(c.Interval)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
	}
}

// tail keeps the last outputLimit bytes written to it.
type tail struct {
	buf []byte
	cut bool
}

func (t *tail) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= outputLimit {
		t.buf = append(t.buf[:0], p[len(p)-outputLimit:]...)
		t.cut = true
		return n, nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - outputLimit; over > 0 {
		copy(t.buf, t.buf[over:])
		t.buf = t.buf[:outputLimit]
		t.cut = true
	}
	return n, nil
}

// String is the kept output, valid UTF-8, without the final newline, marked when its start was cut.
func (t *tail) String() string {
	s := strings.ToValidUTF8(strings.TrimRight(string(t.buf), "\n"), "\uFFFD")
	if t.cut {
		s = "[...]" + s
	}
	return s
}
