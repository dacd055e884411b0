package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// golist runs go list with args in the module and returns its lines.
func golist(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Fields(string(out))
}

// The floor links exactly the third-party packages that hostos's own packages import (on Linux, as
// the bench builds it): one more would raise the floor, one less would lower it below what hostos
// must pay.
func TestImportsMatchHostos(t *testing.T) {
	const mod = "github.com/hostos/hostos/"
	var own []string
	for _, p := range golist(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "../../../cmd/hostos") {
		if strings.HasPrefix(p, mod) {
			own = append(own, p)
		}
	}
	var want []string
	for _, p := range golist(t, append([]string{"-f", `{{join .Imports "\n"}}`}, own...)...) {
		if !strings.HasPrefix(p, mod) && strings.Contains(strings.Split(p, "/")[0], ".") {
			want = append(want, p)
		}
	}
	got := golist(t, "-f", `{{join .Imports "\n"}}`, ".")
	slices.Sort(want)
	want = slices.Compact(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the floor imports\n%s\nhostos imports\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
