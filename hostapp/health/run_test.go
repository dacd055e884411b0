package health

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// check builds a check that runs without waiting between attempts.
func check(name string, retries, count int, command ...string) Check {
	return Check{Name: name, Command: command, Count: count, Timeout: 10 * time.Second, Retries: retries}
}

// counting is a shell script that numbers its runs in the file $1 and exits with the status the case
// statement $2 gives the run number (default 0).
func counting(t *testing.T, cases string) []string {
	t.Helper()
	counter := filepath.Join(t.TempDir(), "counter")
	script := `n=$(cat "$0" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0"; echo "run $n"; case $n in ` + cases + ` esac; exit 0`
	return []string{"/bin/sh", "-c", script, counter}
}

func runOne(t *testing.T, c Check) (Result, []string) {
	t.Helper()
	var lines []string
	rs, err := Run(context.Background(), Checks{c}, func(s string) { lines = append(lines, s) })
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rs) != 1 {
		t.Fatalf("Run returned %d results, want 1", len(rs))
	}
	if len(lines) != rs[0].Attempts {
		t.Errorf("%d log lines for %d attempts: %q", len(lines), rs[0].Attempts, lines)
	}
	return rs[0], lines
}

func TestRunAttempts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		c        Check
		passed   bool
		attempts int
		errHas   string
	}{
		{"true", check("t", 0, 1, "/bin/true"), true, 1, ""},
		{"false", check("f", 0, 1, "/bin/false"), false, 1, "exit status 1"},
		{"false with retries", check("f", 2, 1, "/bin/false"), false, 3, "exit status 1"},
		{"passes on the 3rd attempt", check("c", 2, 1, counting(t, "1|2) exit 1;;")...), true, 3, ""},
		{"one retry too few", check("c", 1, 1, counting(t, "1|2) exit 1;;")...), false, 2, "exit status 1\nrun 2"},
		{"two in a row", check("c", 1, 2, counting(t, "2) exit 1;;")...), true, 4, ""},
		{"two in a row, no retries", check("c", 0, 2, counting(t, "2) exit 1;;")...), false, 2, "exit status 1"},
		{"flapping exhausts retries", check("c", 2, 2, counting(t, "2|4|6|8) exit 1;;")...), false, 6, ""},
		{"not found", check("n", 0, 1, "/nonexistent/health-check"), false, 1, "no such file"},
		{"output kept", check("o", 0, 1, "/bin/sh", "-c", "echo to stdout; echo oops >&2; exit 3"), false, 1, "exit status 3\nto stdout\noops"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := runOne(t, tc.c)
			if r.Name != tc.c.Name || r.Passed != tc.passed || r.Attempts != tc.attempts {
				t.Fatalf("got %+v, want passed=%v after %d attempts", r, tc.passed, tc.attempts)
			}
			if tc.passed && r.Err != "" {
				t.Fatalf("passed with Err %q", r.Err)
			}
			if !tc.passed && !strings.Contains(r.Err, tc.errHas) {
				t.Fatalf("Err %q does not contain %q", r.Err, tc.errHas)
			}
		})
	}
}

func TestRunKeepsOutputTail(t *testing.T) {
	c := check("big", 0, 1, "/bin/sh", "-c", `i=0; while [ $i -lt 300 ]; do echo "line $i of some output"; i=$((i+1)); done; echo END; exit 1`)
	r, _ := runOne(t, c)
	if r.Passed || !strings.HasSuffix(r.Err, "END") || !strings.Contains(r.Err, "[...]") {
		t.Fatalf("Err does not end with the output tail: %q", r.Err)
	}
	if len(r.Err) > outputLimit+100 {
		t.Fatalf("Err is %d bytes, want about %d", len(r.Err), outputLimit)
	}
}

func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	c := check("slow", 0, 1, "/bin/sh", "-c", `sleep 30 & echo $! > "$0"; sleep 5; wait`, pidFile)
	c.Timeout = 200 * time.Millisecond
	start := time.Now()
	r, _ := runOne(t, c)
	if r.Passed || !strings.Contains(r.Err, "timed out after 200ms") {
		t.Fatalf("got %+v, want a timeout", r)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("Run took %s: the command was not killed at its timeout", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The background sleep was in the check's process group: it must be gone (or a zombie nobody reaped).
	for deadline := time.Now().Add(5 * time.Second); alive(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d of the timed-out check is still running", pid)
		}
	}
}

func TestRunKillsLeftoversOfAPassingCheck(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	c := check("leaves", 0, 1, "/bin/sh", "-c", `sleep 30 & echo $! > "$0"`, pidFile)
	start := time.Now()
	r, _ := runOne(t, c)
	if !r.Passed {
		t.Fatalf("got %+v", r)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Run took %s: it waited for the leftover child", d)
	}
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for deadline := time.Now().Add(5 * time.Second); pid > 0 && alive(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("leftover child %d is still running", pid)
		}
	}
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(s[i+1:], " Z")
}

func TestRunWaitsTheInterval(t *testing.T) {
	// With an hour between attempts, a 300ms context sees exactly one attempt.
	c := check("f", 5, 1, "/bin/false")
	c.Interval = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rs, err := Run(ctx, Checks{c}, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `"f"`) {
		t.Fatalf("error %v, want the context's naming the check", err)
	}
	if len(rs) != 1 || rs[0].Passed || rs[0].Attempts != 1 || !strings.HasPrefix(rs[0].Err, "interrupted") {
		t.Fatalf("results %+v, want one interrupted check after one attempt", rs)
	}
}

func TestRunContextEndsDuringAttempt(t *testing.T) {
	c := check("s", 0, 1, "/bin/sh", "-c", "sleep 30")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	rs, err := Run(ctx, Checks{c}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want context.DeadlineExceeded", err)
	}
	if len(rs) != 1 || rs[0].Passed || !strings.HasPrefix(rs[0].Err, "interrupted") {
		t.Fatalf("results %+v", rs)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Run took %s after its context ended", d)
	}
}

func TestRunStopsAtFirstFailure(t *testing.T) {
	var lines []string
	rs, err := Run(context.Background(), Checks{
		check("one", 0, 1, "/bin/true"), check("two", 0, 1, "/bin/false"), check("three", 0, 1, "/bin/true"),
	}, func(s string) { lines = append(lines, s) })
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || !rs[0].Passed || rs[1].Passed || rs[1].Name != "two" {
		t.Fatalf("results %+v, want one passed and two failed", rs)
	}
	if len(lines) != 2 || !strings.Contains(lines[0], `"one"`) || !strings.Contains(lines[1], `"two"`) {
		t.Fatalf("log %q", lines)
	}
}

func TestRunEmptyIsHealthy(t *testing.T) {
	rs, err := Run(context.Background(), Default(), nil)
	if err != nil || len(rs) != 0 {
		t.Fatalf("Run(Default()) = %v, %v", rs, err)
	}
}

func TestRunRejectsInvalidChecks(t *testing.T) {
	for _, c := range []Check{
		{Name: "zero", Command: []string{"/bin/true"}, Timeout: time.Second},
		{Name: "no-timeout", Command: []string{"/bin/true"}, Count: 1},
		{Name: "no-command", Count: 1, Timeout: time.Second},
	} {
		if _, err := Run(context.Background(), Checks{c}, nil); err == nil {
			t.Errorf("Run accepted %+v", c)
		}
	}
}
