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
