//go:build linux

// Command pairs times two commands pair by pair (A then B, B then A, in turn) and prints the median of
// the per-pair ratios A/B with their minimum and maximum, so that a machine whose speed drifts within
// seconds cannot fake a win or a loss. Every bench script uses it for its comparisons.
//
//	pairs [-n PAIRS] [-warmup N] [-name LABEL] [-shell SH] [-prep-a CMD] [-prep-b CMD] [-target X] -a CMD -b CMD
//
// CMD is a shell command line: without shell syntax it is run directly (no shell start-up is timed),
// otherwise through sh -c; with -shell bash every command runs through bash -c (a script's functions,
// exported with export -f, can then be the commands). -prep-a and -prep-b run untimed before each run of A and of B (a fresh copy
// of an image, say). A failing command stops the run with its output. -target X adds a line saying
// whether the median ratio is at most X. The last line is machine-readable:
//
//	RESULT name=LABEL pairs=N median=R min=R max=R a_s=S b_s=S a_rss_mib=M b_rss_mib=M
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pairs:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("pairs", flag.ContinueOnError)
	n := fl.Int("n", 7, "number of pairs")
	warmup := fl.Int("warmup", 1, "untimed runs of each command first")
	name := fl.String("name", "A/B", "label of the comparison")
	a := fl.String("a", "", "command A (the numerator)")
	b := fl.String("b", "", "command B (the denominator)")
	prepA := fl.String("prep-a", "", "untimed command before each run of A")
	prepB := fl.String("prep-b", "", "untimed command before each run of B")
	target := fl.Float64("target", 0, "the median ratio to meet (at most), 0 for none")
	shell := fl.String("shell", "", "run every command through this shell's -c")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *a == "" || *b == "" || *n < 1 {
		return errors.New("need -a, -b and -n of at least 1")
	}
	ca, cb := cmd{run: *a, prep: *prepA, shell: *shell}, cmd{run: *b, prep: *prepB, shell: *shell}
	for i := 0; i < *warmup; i++ {
		if _, err := ca.time(); err != nil {
			return err
		}
		if _, err := cb.time(); err != nil {
			return err
		}
	}
	var ratios, ta, tb []float64
	for i := 0; i < *n; i++ {
		first, second := &ca, &cb
		if i%2 == 1 {
			first, second = second, first
		}
		t1, err := first.time()
		if err != nil {
			return err
		}
		t2, err := second.time()
		if err != nil {
			return err
		}
		if i%2 == 1 {
			t1, t2 = t2, t1
		}
		ta, tb = append(ta, t1), append(tb, t2)
		ratios = append(ratios, t1/t2)
	}
	med, lo, hi := median(ratios), minOf(ratios), maxOf(ratios)
	fmt.Printf("%s: A/B median %.2fx (min %.2fx, max %.2fx) over %d interleaved pairs; A median %s, B median %s\n",
		*name, med, lo, hi, *n, seconds(median(ta)), seconds(median(tb)))
	fmt.Printf("  A: %s\n  B: %s\n", *a, *b)
	if *target > 0 {
		verdict := "PASS"
		if med > *target {
			verdict = "FAIL"
		}
		fmt.Printf("  %s: median %.2fx, target <= %.2fx\n", verdict, med, *target)
	}
	fmt.Printf("RESULT name=%s pairs=%d median=%.3f min=%.3f max=%.3f a_s=%.4f b_s=%.4f a_rss_mib=%.1f b_rss_mib=%.1f\n",
		strings.ReplaceAll(*name, " ", "_"), *n, med, lo, hi, median(ta), median(tb), ca.rss, cb.rss)
	return nil
}

type cmd struct {
	run, prep, shell string
	rss              float64 // peak resident set in MiB over the timed runs
}

// time runs the preparation untimed, then the command, and returns its wall time in seconds.
func (c *cmd) time() (float64, error) {
	if c.prep != "" {
		if out, err := c.command(c.prep).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%s: %w: %s", c.prep, err, bytes.TrimSpace(out))
		}
	}
	x := c.command(c.run)
	var out bytes.Buffer
	x.Stdout, x.Stderr = &out, &out
	start := time.Now()
	err := x.Run()
	took := time.Since(start).Seconds()
	if err != nil {
		return 0, fmt.Errorf("%s: %w: %s", c.run, err, tail(out.String()))
	}
	if ru, ok := x.ProcessState.SysUsage().(*syscall.Rusage); ok {
		c.rss = max(c.rss, float64(ru.Maxrss)/1024)
	}
	return took, nil
}

// command runs line through c.shell when set, else directly when it is plain words (quotes allowed),
// else through sh -c.
func (c *cmd) command(line string) *exec.Cmd {
	if c.shell != "" {
		return exec.Command(c.shell, "-c", line)
	}
	if words, ok := splitWords(line); ok && len(words) > 0 {
		return exec.Command(words[0], words[1:]...)
	}
	return exec.Command("sh", "-c", line)
}

// splitWords splits a line of plain words, single- or double-quoted; ok is false at any other shell syntax.
func splitWords(line string) ([]string, bool) {
	var words []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case quote != 0 && ch == quote:
			quote = 0
		case quote == '\'':
			cur.WriteByte(ch)
		case quote == '"':
			if strings.IndexByte("$`\\", ch) >= 0 {
				return nil, false
			}
			cur.WriteByte(ch)
		case ch == '\'' || ch == '"':
			quote, in = ch, true
		case ch == ' ' || ch == '\t':
			if in {
				words, in = append(words, cur.String()), false
				cur.Reset()
			}
		case strings.IndexByte("|&;<>()$`\\*?[]#~=%{}\n", ch) >= 0:
			return nil, false
		default:
			cur.WriteByte(ch)
			in = true
		}
	}
	if quote != 0 {
		return nil, false
	}
	if in {
		words = append(words, cur.String())
	}
	return words, true
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func seconds(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.1f ms", s*1000)
	}
	return fmt.Sprintf("%.3f s", s)
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "; ")
}
