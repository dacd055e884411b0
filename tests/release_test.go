//go:build linux

package tests

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hostos/hostos/config/apps"
	"github.com/hostos/hostos/tests/enginetest"
	"github.com/hostos/hostos/tests/testtool"
)

// releaseProject writes a two-service balena project: frontend from a Dockerfile.template that copies
// %%BALENA_ARCH%%/msg, backend from a plain Dockerfile that copies $TARGETARCH/$PROG (a build arg of the
// compose file), both FROM scratch with the fixture program (helloSource) built for amd64 and arm64, so
// nothing is pulled and no step runs in the image.
func releaseProject(t *testing.T) string {
	t.Helper()
	goTool := testtool.Need(t, "go")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "main.go"), []byte(helloSource), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644))
	proj := filepath.Join(dir, "project")
	files := map[string]string{
		"docker-compose.yml": `version: "2.1"
services:
  frontend:
    build: ./frontend
    restart: always
    labels:
      io.balena.features.dbus: "1"
  backend:
    build:
      context: ./backend
      args:
        PROG: hello
    environment:
      GREETING: hi
    depends_on:
      - frontend
`,
		"frontend/Dockerfile.template": "FROM scratch\nCOPY %%BALENA_ARCH%%/hello /bin/hello\nCOPY %%BALENA_ARCH%%/msg /msg\nCMD [\"/bin/hello\"]\n",
		"backend/Dockerfile":           "FROM scratch\nARG TARGETARCH\nARG PROG\nCOPY ${TARGETARCH}/${PROG} /bin/hello\nCOPY ${TARGETARCH}/msg /msg\nCMD [\"/bin/hello\"]\n",
	}
	for goarch, dirs := range map[string][2]string{"amd64": {"amd64", "amd64"}, "arm64": {"aarch64", "arm64"}} {
		bin := filepath.Join(dir, "hello-"+goarch)
		cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOFLAGS=", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the fixture program for %s: %v: %s", goarch, err, out)
		}
		b, err := os.ReadFile(bin)
		must(t, err)
		files["frontend/"+dirs[0]+"/hello"] = string(b)
		files["frontend/"+dirs[0]+"/msg"] = "hello from frontend " + dirs[0] + "\n"
		files["backend/"+dirs[1]+"/hello"] = string(b)
		files["backend/"+dirs[1]+"/msg"] = "hello from backend " + dirs[1] + "\n"
	}
	for name, content := range files {
		p := filepath.Join(proj, filepath.FromSlash(name))
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(content), 0o755))
	}
	return proj
}

// dataPartition is where the resin-data partition (the sixth) of a built msdos image is, in bytes.
func dataPartition(t *testing.T, img string) (off, n int64) {
	t.Helper()
	for _, p := range sfdiskJSON(t, img).Partitions {
		if strings.HasSuffix(p.Node, "6") {
			return p.Start * 512, p.Size * 512
		}
	}
	t.Fatalf("%s: no sixth partition", img)
	return 0, 0
}

// archiveFile reads the file p of the single image in the docker save archive, and the image's
// architecture.
func archiveFile(t *testing.T, archive, p string) (string, string) {
	t.Helper()
	img, err := tarball.ImageFromPath(archive, nil)
	must(t, err)
	cf, err := img.ConfigFile()
	must(t, err)
	layers, err := img.Layers()
	must(t, err)
	for i := len(layers) - 1; i >= 0; i-- {
		rc, err := layers[i].Uncompressed()
		must(t, err)
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			must(t, err)
			if strings.TrimPrefix(h.Name, "./") == strings.TrimPrefix(p, "/") {
				b, err := io.ReadAll(tr)
				must(t, err)
				rc.Close()
				return string(b), cf.Architecture
			}
		}
		rc.Close()
	}
	t.Fatalf("%s: no %s in any layer", archive, p)
	return "", ""
}

// TestRelease builds a two-service project with Debian's dockerd (BuildKit) and preloads it: for an amd64
// device type (taken from the image) the dockerd judge on the data partition lists both images and runs
// each; for arm64 the archives are checked (architecture, the template's arch) and, where binfmt has
// qemu-aarch64, run too. A failing build and a missing docker CLI leave the image as it was. One
// builder dockerd for all of it, stopped before the judge starts.
func TestRelease(t *testing.T) {
	start := time.Now()
	dockerd, client := enginetest.Need(t)
	proj := releaseProject(t)
	sizes := "[sizes]\nboot = 40\nroot = 64\nstate = 8\ndata = 64\n"
	x86 := newFixture(t, "genericx86-64-ext", "msdos", sizes)
	mustHostos(t, nil, nil, "build", "--spec", x86.spec, "-o", x86.out)
	qemu := false
	if _, err := os.Stat("/proc/sys/fs/binfmt_misc/qemu-aarch64"); err == nil {
		qemu = true
	}

	e := enginetest.Start(t, dockerd, client, filepath.Join(t.TempDir(), "builder"))
	// HOSTOS_DOCKER unset: the CLI is found on PATH, where a newer client without buildx may come first.
	env := []string{"DOCKER_HOST=" + e.Host(), "HOSTOS_DOCKER=", "SOURCE_DATE_EPOCH=1700000000"}
	t.Logf("builder dockerd up after %v", time.Since(start).Round(time.Millisecond))

	// amd64: the device type is the image's own.
	preloaded := filepath.Join(t.TempDir(), "amd64.img")
	out := mustHostos(t, env, nil, "release", "preload", x86.out, proj, "--app-name", "edge", "-o", preloaded)
	if !strings.Contains(out, "linux/amd64") || !strings.Contains(out, "preloaded/frontend:latest") {
		t.Errorf("release preload printed:\n%s", out)
	}
	off, n := dataPartition(t, preloaded)
	f, err := apps.Decode(readDataFile(t, preloaded, off, n, "/apps.json"))
	must(t, err)
	must(t, f.Validate())
	raw, _ := json.Marshal(f)
	for _, want := range []string{`"preloaded/frontend:latest"`, `"preloaded/backend:latest"`, `"GREETING":"hi"`, `"io.balena.features.dbus":"1"`, `"edge"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("apps.json has no %s:\n%s", want, raw)
		}
	}
	t.Logf("amd64 built and preloaded after %v", time.Since(start).Round(time.Millisecond))

	// release build, then the hostos preload it prints, gives the same apps.json.
	x86Dir := filepath.Join(t.TempDir(), "amd64")
	out = mustHostos(t, env, nil, "release", "build", proj, "--device-type", "genericx86-64-ext", "--app-name", "edge", "-o", x86Dir)
	_, next, ok := strings.Cut(out, "preload with: hostos ")
	if !ok {
		t.Fatalf("release build printed no preload command:\n%s", out)
	}
	twoStep := filepath.Join(t.TempDir(), "two-step.img")
	next = strings.Replace(strings.TrimSpace(next), "IMAGE", x86.out+" -o "+twoStep+" --app-name edge", 1)
	mustHostos(t, env, nil, strings.Fields(next)...)
	if a, b := readDataFile(t, preloaded, off, n, "/apps.json"), readDataFile(t, twoStep, off, n, "/apps.json"); string(a) != string(b) {
		t.Errorf("release preload wrote\n%s\nrelease build and preload wrote\n%s", a, b)
	}

	// arm64: built without emulation (no RUN step), checked in the archives.
	armDir := filepath.Join(t.TempDir(), "arm64")
	var built struct {
		Platform string
		Images   []struct{ Service, Archive string }
	}
	must(t, json.Unmarshal([]byte(mustHostos(t, env, nil, "release", "build", proj, "--device-type", "raspberrypi4-64", "-o", armDir, "--json")), &built))
	if built.Platform != "linux/arm64" || len(built.Images) != 2 {
		t.Errorf("release build for raspberrypi4-64: %+v", built)
	}
	for _, im := range built.Images {
		want := map[string]string{"frontend": "hello from frontend aarch64\n", "backend": "hello from backend arm64\n"}[im.Service]
		msg, arch := archiveFile(t, im.Archive, "/msg")
		if msg != want || arch != "arm64" {
			t.Errorf("%s: /msg %q, architecture %q; want %q, arm64", im.Archive, msg, arch, want)
		}
	}
	var armImg string
	if qemu {
		rpi := newFixture(t, "raspberrypi4-64", "msdos", sizes)
		mustHostos(t, nil, nil, "build", "--spec", rpi.spec, "-o", rpi.out)
		armImg = filepath.Join(t.TempDir(), "arm64.img")
		mustHostos(t, env, nil, "release", "preload", rpi.out, proj, "--device-type", "raspberrypi4-64", "-o", armImg)
	}

	// Bad inputs: the image stays as it was, byte for byte.
	before := hashOutside(t, x86.out, 0, 0)
	broken := filepath.Join(t.TempDir(), "broken")
	must(t, os.MkdirAll(broken, 0o755))
	must(t, os.WriteFile(filepath.Join(broken, "Dockerfile"), []byte("FROM scratch\nCOPY no-such-file /x\n"), 0o644))
	withRun := filepath.Join(t.TempDir(), "with-run")
	must(t, os.MkdirAll(withRun, 0o755))
	must(t, os.WriteFile(filepath.Join(withRun, "Dockerfile"), []byte("FROM scratch\nRUN [\"/bin/true\"]\n"), 0o644))
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
		skip bool
	}{
		{"a failing build", env, []string{"release", "preload", x86.out, broken}, []string{"no-such-file", "not found"}, false},
		{"no such docker CLI", append(env[:len(env):len(env)], "HOSTOS_DOCKER=/nonexistent/docker"), []string{"release", "preload", x86.out, proj},
			[]string{"/nonexistent/docker"}, false},
		{"a docker CLI without BuildKit", env, []string{"release", "preload", x86.out, proj, "--docker", "/usr/local/bin/docker"},
			[]string{"without buildx", "install"}, !fileExists("/usr/local/bin/docker")},
		{"a RUN step for arm64 without emulation", env, []string{"release", "preload", x86.out, withRun, "--device-type", "raspberrypi4-64"},
			[]string{"qemu-aarch64", "qemu-user-static"}, qemu},
	} {
		if tc.skip {
			t.Logf("%s: not checked on this machine", tc.name)
			continue
		}
		r := hostos(t, tc.env, nil, tc.args...)
		if r.code == 0 {
			t.Errorf("%s: exit 0", tc.name)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: the error does not say %q:\n%s", tc.name, w, r.stderr)
			}
		}
		if got := hashOutside(t, x86.out, 0, 0); got != before {
			t.Fatalf("%s: the image changed", tc.name)
		}
		if l := leftovers(t, filepath.Dir(x86.out)); len(l) > 0 {
			t.Errorf("%s: temporary files left: %v", tc.name, l)
		}
	}
	e.Stop()
	t.Logf("builds done after %v", time.Since(start).Round(time.Millisecond))

	engineRuns(t, preloaded, off, map[string]string{
		"preloaded/frontend:latest": "hello from frontend amd64\n",
		"preloaded/backend:latest":  "hello from backend amd64\n",
	})
	t.Logf("judged after %v", time.Since(start).Round(time.Millisecond))
	t.Run("arm64 images run", func(t *testing.T) {
		if !qemu {
			t.Skip("no qemu-aarch64 binfmt_misc handler (install qemu-user-static and binfmt-support): the arm64 images were built and checked, not run")
		}
		armOff, _ := dataPartition(t, armImg)
		engineRuns(t, armImg, armOff, map[string]string{
			"preloaded/frontend:latest": "hello from frontend aarch64\n",
			"preloaded/backend:latest":  "hello from backend arm64\n",
		})
	})
}
