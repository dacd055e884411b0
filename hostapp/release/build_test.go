package release

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestNeedsEmulation(t *testing.T) {
	for _, tc := range []struct {
		name, dockerfile string
		want             bool
	}{
		{"copy only", "FROM scratch\nCOPY amd64/hello /hello\nCMD [\"/hello\"]\n", false},
		{"run", "FROM balenalib/raspberrypi3-debian\nRUN apt-get update\n", true},
		{"lowercase run", "from alpine\nrun true\n", true},
		{"run in a later stage", "FROM scratch AS a\nCOPY x /x\nFROM alpine\nRUN ls\n", true},
		{"run in a comment", "FROM scratch\n# RUN apt-get update\nCOPY x /x\n", false},
		{"run after a continuation", "FROM scratch\nLABEL a=1 \\\n  RUN=2\nCOPY x /x\n", false},
		{"stage with its own platform", "FROM --platform=$BUILDPLATFORM golang AS b\nRUN go build\nFROM scratch\nCOPY --from=b /x /x\n", false},
		{"tab after run", "FROM alpine\nRUN\ttrue\n", true},
	} {
		if got := NeedsEmulation([]byte(tc.dockerfile)); got != tc.want {
			t.Errorf("%s: NeedsEmulation = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCheckEmulation(t *testing.T) {
	dir := t.TempDir()
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64"}
	arm := v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	for _, tc := range []struct {
		plat   v1.Platform
		server string
		ok     bool
	}{
		{v1.Platform{OS: "linux", Architecture: "amd64"}, "amd64", true},
		{v1.Platform{OS: "linux", Architecture: "386"}, "amd64", true},
		{arm, "arm64", true},
		{arm64, "amd64", false},
		{arm, "amd64", false},
	} {
		err := CheckEmulation(dir, tc.plat, tc.server)
		if (err == nil) != tc.ok {
			t.Errorf("%s on %s without handlers: %v", tc.plat, tc.server, err)
		}
		if err != nil && (!errors.Is(err, ErrNoEmulation) || !strings.Contains(err.Error(), "qemu-user-static")) {
			t.Errorf("%s on %s: %v does not say what to install", tc.plat, tc.server, err)
		}
	}
	writeOK(t, os.WriteFile(filepath.Join(dir, "qemu-aarch64"), []byte("disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n"), 0o644))
	if err := CheckEmulation(dir, arm64, "amd64"); err == nil {
		t.Error("a disabled qemu-aarch64 handler was taken as emulation")
	}
	writeOK(t, os.WriteFile(filepath.Join(dir, "qemu-aarch64"), []byte("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n"), 0o644))
	if err := CheckEmulation(dir, arm64, "amd64"); err != nil {
		t.Errorf("with qemu-aarch64 enabled: %v", err)
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		v            string
		major, minor int
		ok           bool
	}{
		{"20.10.24+dfsg1", 20, 10, true},
		{"28.2.2", 28, 2, true},
		{"22.06.0-beta.0", 22, 6, true},
		{"", 0, 0, false},
		{"Cannot connect", 0, 0, false},
	} {
		major, minor, ok := parseVersion(tc.v)
		if major != tc.major || minor != tc.minor || ok != tc.ok {
			t.Errorf("parseVersion(%q) = %d, %d, %v", tc.v, major, minor, ok)
		}
	}
}

func TestParseTag(t *testing.T) {
	for _, ok := range []string{"preloaded/frontend:latest", "my-app/data_1", "registry.local/a/b"} {
		if _, err := ParseTag(ok); err != nil {
			t.Errorf("ParseTag(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"Preloaded/frontend", "a//b", "-a/b", "a/b/"} {
		if _, err := ParseTag(bad); err == nil {
			t.Errorf("ParseTag(%q) accepted", bad)
		}
	}
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{out: func(s string) { got = append(got, s) }}
	for _, chunk := range []string{"#1 a", "\n#2 b\r\n\n", "#3", " c\n", "#4 d"} {
		w.Write([]byte(chunk))
	}
	w.Close()
	want := []string{"#1 a", "#2 b", "#3 c", "#4 d"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines %q, want %q", got, want)
	}
	for i := 0; i < 3*tailLines; i++ {
		w.Write([]byte("x\n"))
	}
	w.Write([]byte("#4 [1/1] COPY nope /x\n#4 sha256:9bb0385edaa57a72\n#4 ERROR: \"/nope\" not found: not found\n------\n > [1/1] COPY nope /x:\n------\nerror: failed to solve\n#5 DONE 0.0s\n"))
	want = []string{"x", "x", "#4 [1/1] COPY nope /x", `#4 ERROR: "/nope" not found: not found`, "> [1/1] COPY nope /x:", "error: failed to solve"}
	if strings.Join(w.tail, "|") != strings.Join(want, "|") {
		t.Errorf("tail %q, want %q", w.tail, want)
	}
}

// TestFindDocker: an explicit path that is missing or not a program is refused by name; on PATH, a
// client without BuildKit is passed over for one with it.
func TestFindDocker(t *testing.T) {
	ctx := t.Context()
	missing := filepath.Join(t.TempDir(), "docker")
	_, err := FindDocker(ctx, missing)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing CLI: %v", err)
	}
	plain := filepath.Join(t.TempDir(), "docker")
	writeOK(t, os.WriteFile(plain, []byte("not a program"), 0o644))
	if _, err := FindDocker(ctx, plain); err == nil || !strings.Contains(err.Error(), "not an executable") {
		t.Errorf("non-executable CLI: %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := FindDocker(ctx, ""); !errors.Is(err, ErrNoBuilder) || !strings.Contains(err.Error(), "install") {
		t.Errorf("no docker on PATH: %v", err)
	}

	// This machine's (and CI's) pair: a 28.x client without buildx ahead of Debian's 20.10.
	newer, debian := "/usr/local/bin/docker", "/usr/bin/docker"
	for _, p := range []string{newer, debian} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s: %v (the PATH order check needs both clients)", p, err)
		}
	}
	a, b := t.TempDir(), t.TempDir()
	writeOK(t, os.Symlink(newer, filepath.Join(a, "docker")))
	writeOK(t, os.Symlink(debian, filepath.Join(b, "docker")))
	t.Setenv("PATH", a+string(os.PathListSeparator)+b)
	d, err := FindDocker(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.Path != filepath.Join(b, "docker") && !d.Buildx {
		t.Errorf("picked %s", d)
	}
	if d.Path == filepath.Join(b, "docker") && (d.Buildx || !strings.HasPrefix(d.Version, "20.10")) {
		t.Errorf("Debian's client taken as %s", d)
	}
}

func writeOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestBuildBeforeDocker: what Build decides before it asks docker anything.
func TestBuildBeforeDocker(t *testing.T) {
	ctx := t.Context()
	out := t.TempDir()
	pulled := &Rendered{Arch: "aarch64", Services: []Service{{Name: "db", Image: "redis:7"}}}
	b, err := Build(ctx, pulled, BuildOptions{OutDir: out, Docker: "/nonexistent/docker"})
	if err != nil || b.Platform != "linux/arm64" || len(b.Images) != 0 || len(b.Pulled) != 1 {
		t.Errorf("image-only release: %+v, %v", b, err)
	}
	svc := []Service{{Name: "Web", Context: t.TempDir(), Dockerfile: "Dockerfile"}}
	for _, tc := range []struct {
		name string
		r    *Rendered
		o    BuildOptions
		want string
	}{
		{"no output directory", &Rendered{Arch: "amd64", Services: svc}, BuildOptions{}, "output directory"},
		{"an architecture without a platform", &Rendered{Arch: "sparc", Services: svc}, BuildOptions{OutDir: out}, "sparc"},
		{"a bad tag", &Rendered{Arch: "amd64", Services: svc}, BuildOptions{OutDir: out, Tag: "My App"}, "My App/web"},
		{"no such docker", &Rendered{Arch: "amd64", Services: svc}, BuildOptions{OutDir: out, Docker: "/nonexistent/docker"}, "/nonexistent/docker"},
	} {
		if _, err := Build(ctx, tc.r, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
	if es, _ := os.ReadDir(out); len(es) != 0 {
		t.Errorf("output directory holds %d entries after refusals", len(es))
	}
}
