// Package health runs the checks that decide whether a freshly updated root is committed or rolled back.
package health

import (
	"errors"
	"fmt"
	"time"

	"github.com/hostos/hostos/config"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Defaults applied to keys a check leaves out.
const (
	DefaultCount    = 1
	DefaultInterval = 10 * time.Second
	DefaultTimeout  = 60 * time.Second
	DefaultRetries  = 0
)

// Check is one health check: a command that must exit 0 Count times in a row, with at most Retries failed
// attempts along the way.
type Check struct {
	Name     string
	Command  []string      // argv, run without a shell
	Count    int           // consecutive passes needed, at least 1
	Interval time.Duration // wait between attempts, 0 or more
	Timeout  time.Duration // per attempt; the whole process group is killed when it expires
	Retries  int           // failed attempts tolerated before the check fails, 0 or more
}

// Checks is an ordered list of checks; all must pass.
type Checks []Check

// Default is the built-in check list used when no health file exists. It is empty, and an empty list is
// healthy: without a file, the new root is committed once it has booted far enough to run `hostos health`.
// Devices that need more (engine, supervisor, network) ship /etc/hostos/health.toml.
func Default() Checks { return Checks{} }

// fileCheck is one [[check]] table as written; pointers tell a key left out from a zero value.
type fileCheck struct {
	Name     string   `toml:"name"`
	Command  []string `toml:"command"`
	Count    *int     `toml:"count"`
	Interval *string  `toml:"interval"`
	Timeout  *string  `toml:"timeout"`
	Retries  *int     `toml:"retries"`
}

// Parse decodes a health file strictly: unknown keys, values of the wrong type or out of range, empty commands
// and duplicate names are errors naming the file (name) and line.
func Parse(data []byte, name string) (Checks, error) {
	var doc struct {
		Check []fileCheck `toml:"check"`
	}
	if err := config.DecodeTOML(data, name, &doc); err != nil {
		return nil, err
	}
	lines := keyLines(data)
	at := func(i int, key string) string {
		if l := lines.line(i, key); l > 0 {
			return fmt.Sprintf("%s:%d", name, l)
		}
		return name
	}
	cs := make(Checks, 0, len(doc.Check))
	seen := make(map[string]bool, len(doc.Check))
	for i, fc := range doc.Check {
		c := Check{Name: fc.Name, Command: fc.Command, Count: DefaultCount, Interval: DefaultInterval,
			Timeout: DefaultTimeout, Retries: DefaultRetries}
		if fc.Count != nil {
			c.Count = *fc.Count
		}
		if fc.Retries != nil {
			c.Retries = *fc.Retries
		}
		for _, d := range []struct {
			key string
			s   *string
			dst *time.Duration
		}{{"interval", fc.Interval, &c.Interval}, {"timeout", fc.Timeout, &c.Timeout}} {
			if d.s == nil {
				continue
			}
			v, err := time.ParseDuration(*d.s)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: key %q: %q is not a duration like \"10s\" or \"2m\"", at(i, d.key), c.what(i), d.key, *d.s)
			}
			*d.dst = v
		}
		if key, err := c.validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", at(i, key), err)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("%s: check %q: name used twice", at(i, "name"), c.Name)
		}
		seen[c.Name] = true
		cs = append(cs, c)
	}
	return cs, nil
}

// what names a check in errors: by name, else by its place in the list.
func (c Check) what(i int) string {
	if c.Name == "" {
		return fmt.Sprintf("check %d", i+1)
	}
	return fmt.Sprintf("check %q", c.Name)
}

// validate checks a check's values and names the offending key.
func (c Check) validate() (key string, err error) {
	what := c.what(0)
	switch {
	case c.Name == "":
		return "name", errors.New("check without a name")
	case len(c.Command) == 0 || c.Command[0] == "":
		return "command", fmt.Errorf("%s: key \"command\": empty command", what)
	case c.Count < 1:
		return "count", fmt.Errorf("%s: key \"count\": %d, need at least 1", what, c.Count)
	case c.Retries < 0:
		return "retries", fmt.Errorf("%s: key \"retries\": %d is negative", what, c.Retries)
	case c.Interval < 0:
		return "interval", fmt.Errorf("%s: key \"interval\": %s is negative", what, c.Interval)
	case c.Timeout <= 0:
		return "timeout", fmt.Errorf("%s: key \"timeout\": %s, need more than 0", what, c.Timeout)
	}
	return "", nil
}

// lineIndex holds, for the n-th [[check]] table, the line of its header and of each key in it.
type lineIndex struct {
	header []int
	keys   []map[string]int
}

// line returns the line of key in check i, else the line of its header, else 0.
func (x lineIndex) line(i int, key string) int {
	if i >= len(x.header) {
		return 0
	}
	if l, ok := x.keys[i][key]; ok {
		return l
	}
	return x.header[i]
}

// keyLines indexes where each [[check]] key sits, so errors found after decoding can name a line. It only
// runs on documents the decoder accepted.
func keyLines(data []byte) lineIndex {
	var x lineIndex
	var p unstable.Parser
	p.Reset(data)
	inCheck := false
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.ArrayTable, unstable.Table:
			k := e.Key()
			var parts []string
			for k.Next() {
				parts = append(parts, string(k.Node().Data))
			}
			inCheck = e.Kind == unstable.ArrayTable && len(parts) == 1 && parts[0] == "check"
			if inCheck {
				k := e.Key()
				k.Next()
				x.header = append(x.header, p.Shape(k.Node().Raw).Start.Line)
				x.keys = append(x.keys, map[string]int{})
			}
		case unstable.KeyValue:
			if !inCheck {
				continue
			}
			k := e.Key()
			if k.Next() {
				x.keys[len(x.keys)-1][string(k.Node().Data)] = p.Shape(e.Raw).Start.Line
			}
		}
	}
	return x
}

// MaxChecksBytes bounds a health checks file.
const MaxChecksBytes = 1 << 20
