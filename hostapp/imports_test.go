package hostapp_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLibrariesDoNotDraw keeps the CLI and terminal libraries out of every package but cmd/ and the
// programs (package main, such as the bench's floor): libraries take progress and log callbacks, only
// cmd/ draws.
func TestLibrariesDoNotDraw(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Name}}: {{join .Imports \" \"}}", "../...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(string(out), "\n") {
		pkg, imports, ok := strings.Cut(line, ": ")
		pkg, name, _ := strings.Cut(pkg, " ")
		if !ok || !strings.HasPrefix(pkg, "github.com/hostos/hostos/") || strings.HasPrefix(pkg, "github.com/hostos/hostos/cmd/") || name == "main" {
			continue
		}
		checked++
		for _, imp := range strings.Fields(imports) {
			if strings.HasPrefix(imp, "github.com/spf13/") || strings.HasPrefix(imp, "github.com/schollz/progressbar") || imp == "golang.org/x/term" {
				t.Errorf("%s imports %s: only cmd/ may", pkg, imp)
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d packages", checked)
	}
}
