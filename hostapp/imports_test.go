package hostapp_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLibrariesDoNotDraw keeps the CLI and terminal libraries out of every package but cmd/: libraries take
// progress and log callbacks, only cmd/ draws.
func TestLibrariesDoNotDraw(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}: {{join .Imports \" \"}}", "../...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(string(out), "\n") {
		pkg, imports, ok := strings.Cut(line, ": ")
		if !ok || !strings.HasPrefix(pkg, "github.com/hostos/hostos/") || strings.HasPrefix(pkg, "github.com/hostos/hostos/cmd/") {
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
