package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

// runRoot runs hostos with args in-process and returns what it printed.
func runRoot(t *testing.T, args ...string) string {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("hostos %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

// TestVersion: --version and the version command print the same one line naming the Go version and the
// platform; version --json holds the same facts.
func TestVersion(t *testing.T) {
	flag := runRoot(t, "--version")
	cmd := runRoot(t, "version")
	if flag != cmd {
		t.Errorf("--version printed %q, version printed %q", flag, cmd)
	}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	if !strings.HasPrefix(flag, "hostos ") || !strings.Contains(flag, runtime.Version()) || !strings.Contains(flag, platform) ||
		strings.Count(flag, "\n") != 1 {
		t.Errorf("--version printed %q", flag)
	}
	var b buildInfo
	if err := json.Unmarshal([]byte(runRoot(t, "version", "--json")), &b); err != nil {
		t.Fatal(err)
	}
	if b.Version == "" || b.Commit == "" || b.Go != runtime.Version() || b.Platform != platform {
		t.Errorf("version --json: %+v", b)
	}
	if b.String()+"\n" != flag {
		t.Errorf("version --json gives %q, --version printed %q", b.String(), flag)
	}
	if help := runRoot(t, "--help"); !strings.Contains(help, "version") || !strings.Contains(help, "flash") {
		t.Errorf("--help lists no version or flash command:\n%s", help)
	}
}

// TestCommandsTable: every entry of commands builds the command it is named after, and a command line
// naming one builds only that one, with the same result as the whole tree.
func TestCommandsTable(t *testing.T) {
	for _, c := range commands {
		if got := c.new().Name(); got != c.name {
			t.Errorf("commands entry %q builds %q", c.name, got)
		}
	}
	if n := len(newRootCmd().Commands()); n < len(commands) {
		t.Errorf("the whole tree has %d commands, the table %d", n, len(commands))
	}
	for _, args := range [][]string{{"version"}, {"configure", "--help"}, {"bundle", "inspect", "--help"}} {
		root := newRootCmdFor(args)
		if got := root.Commands(); len(got) != 1 || got[0].Name() != args[0] {
			t.Errorf("%q: built %d commands", args, len(got))
		}
		var lazy, whole bytes.Buffer
		root.SetOut(&lazy)
		root.SetErr(&lazy)
		root.SetArgs(args)
		lerr := root.Execute()
		full := newRootCmd()
		full.SetOut(&whole)
		full.SetErr(&whole)
		full.SetArgs(args)
		werr := full.Execute()
		if lazy.String() != whole.String() || (lerr == nil) != (werr == nil) {
			t.Errorf("%q: the command alone printed %q (%v), in the whole tree %q (%v)", args, lazy.String(), lerr, whole.String(), werr)
		}
	}
	if got := newRootCmdFor([]string{"--version"}); len(got.Commands()) != 0 {
		t.Errorf("--version built %d commands", len(got.Commands()))
	}
	for _, args := range [][]string{nil, {"--help"}, {"help", "build"}, {"completion", "bash"}, {"biuld"}, {"--version", "x"}} {
		if got := newRootCmdFor(args); len(got.Commands()) < len(commands) {
			t.Errorf("%q: built %d commands, want all", args, len(got.Commands()))
		}
	}
}
