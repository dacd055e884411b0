package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hostos/hostos/config/apps"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/tests/enginetest"
	"github.com/hostos/hostos/tests/testtool"
)

// helloSource is the fixture containers' program: it prints /msg.
const helloSource = `package main

import "os"

func main() {
	b, err := os.ReadFile("/msg")
	if err != nil {
		os.Stdout.WriteString("no message\n")
		os.Exit(1)
	}
	os.Stdout.Write(b)
}
`

// preloadFixture holds a built image and the OCI layouts of the fixture images.
type preloadFixture struct {
	dir, img       string
	one, two       string   // OCI layouts sharing a base layer
	arm, corrupt   string   // an arm64 image; image one with a damaged layer blob
	base           v1.Layer // the layer with the fixture program, shared by the images
	twoSaved       string   // image two as a docker save archive
	big            string   // an image too big for the data partition
	compose        string
	dataOff, dataN int64
}

func layerTar(t *testing.T, entries map[string][]byte, order []string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range order {
		h := &tar.Header{Name: name, ModTime: fixtureTime, Format: tar.FormatPAX, Mode: 0o755, Typeflag: tar.TypeDir}
		if data, ok := entries[name]; ok {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		}
		must(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write(entries[name])
			must(t, err)
		}
	}
	must(t, tw.Close())
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	must(t, err)
	return l
}

// writeLayout writes an image made of layers for arch into a new OCI layout directory.
func writeLayout(t *testing.T, dir, arch string, layers ...v1.Layer) string {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	must(t, err)
	cfg, err := img.ConfigFile()
	must(t, err)
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = arch, "linux"
	cfg.Created = v1.Time{Time: fixtureTime}
	cfg.Config.Entrypoint = []string{"/bin/hello"}
	img, err = mutate.ConfigFile(img, cfg)
	must(t, err)
	p, err := layout.Write(dir, empty.Index)
	must(t, err)
	must(t, p.AppendImage(img))
	return dir
}

func newPreloadFixture(t *testing.T) *preloadFixture {
	t.Helper()
	goTool := testtool.Need(t, "go")
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		testtool.Need(t, tool)
	}
	fx := &preloadFixture{dir: t.TempDir()}
	src := filepath.Join(fx.dir, "hello")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "main.go"), []byte(helloSource), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644))
	cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", "hello", ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the fixture program: %v: %s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(src, "hello"))
	must(t, err)
	base := layerTar(t, map[string][]byte{"bin/hello": bin}, []string{"bin/", "bin/hello"})
	fx.base = base
	top := func(msg string) v1.Layer {
		return layerTar(t, map[string][]byte{"msg": []byte(msg)}, []string{"msg"})
	}
	fx.one = writeLayout(t, filepath.Join(fx.dir, "one"), "amd64", base, top("hello from service one\n"))
	fx.two = writeLayout(t, filepath.Join(fx.dir, "two"), "amd64", base, top("hello from service two\n"))
	fx.arm = writeLayout(t, filepath.Join(fx.dir, "arm"), "arm64", base, top("arm\n"))
	lp, err := layout.FromPath(fx.two)
	must(t, err)
	idx, err := lp.ImageIndex()
	must(t, err)
	im, err := idx.IndexManifest()
	must(t, err)
	twoImg, err := lp.Image(im.Manifests[0].Digest)
	must(t, err)
	fx.twoSaved = filepath.Join(fx.dir, "two.docker.tar")
	must(t, tarball.WriteToFile(fx.twoSaved, name.MustParseReference("hostos-test/two:v1"), twoImg))
	fx.big = writeLayout(t, filepath.Join(fx.dir, "big"), "amd64", base,
		layerTar(t, map[string][]byte{"zeros": make([]byte, 96<<20)}, []string{"zeros"}), top("hello from a big image\n"))
	// image one with its top layer blob damaged (same size, one byte changed).
	fx.corrupt = filepath.Join(fx.dir, "corrupt")
	run(t, "cp", "-a", fx.one, fx.corrupt)
	topDigest, err := top("hello from service one\n").Digest()
	must(t, err)
	blob := filepath.Join(fx.corrupt, "blobs", "sha256", topDigest.Hex)
	b, err := os.ReadFile(blob)
	must(t, err)
	b[len(b)/2] ^= 0xff
	must(t, os.WriteFile(blob, b, 0o644))

	fx.compose = filepath.Join(fx.dir, "docker-compose.yml")
	must(t, os.WriteFile(fx.compose, []byte(`version: "2.1"
services:
  one:
    image: hostos-test/one:v1
    restart: always
    volumes:
      - data:/data
  two:
    image: hostos-test/two:v1
    environment:
      GREETING: hi
volumes:
  data: {}
`), 0o644))

	b2 := newFixture(t, "genericx86-64-ext", "msdos", "[sizes]\nboot = 40\nroot = 64\nstate = 8\ndata = 64\n")
	mustHostos(t, nil, nil, "build", "--spec", b2.spec, "-o", b2.out)
	fx.img = b2.out
	r := inspectJSON(t, fx.img)
	for _, p := range r.Partitions {
		if p.Label == "resin-data" {
			fx.dataOff, fx.dataN = p.Start, p.Size
		}
	}
	if fx.dataN == 0 {
		t.Fatalf("no resin-data partition in %+v", r.Partitions)
	}
	// inspect reports sectors or bytes; the filesystem must be at the start.
	if fx.dataOff%512 == 0 && fx.dataOff < 1<<20 {
		fx.dataOff *= 512
		fx.dataN *= 512
	}
	return fx
}

// hashOutside hashes the image's bytes before and after [off, off+n).
func hashOutside(t *testing.T, img string, off, n int64) string {
	t.Helper()
	f, err := os.Open(img)
	must(t, err)
	defer f.Close()
	fi, err := f.Stat()
	must(t, err)
	h := sha256.New()
	_, err = io.Copy(h, io.NewSectionReader(f, 0, off))
	must(t, err)
	_, err = io.Copy(h, io.NewSectionReader(f, off+n, fi.Size()-off-n))
	must(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// leftovers lists the hostos temporary files and directories in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	must(t, err)
	var out []string
	for _, e := range es {
		if strings.Contains(e.Name(), ".hostos-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func readDataFile(t *testing.T, img string, off, n int64, p string) []byte {
	t.Helper()
	f, err := os.Open(img)
	must(t, err)
	defer f.Close()
	b, err := ext4.ReadFile(f, off, n, p)
	if err != nil {
		t.Fatalf("%s on the data partition: %v", p, err)
	}
	return b
}

// TestPreload preloads a two-service compose release from OCI layouts into a built image and judges it
// with e2fsck, the bytes outside resin-data, apps.json's own rules and a real dockerd that lists and runs
// both images; a second identical preload changes nothing.
func TestPreload(t *testing.T) {
	fx := newPreloadFixture(t)
	outside := hashOutside(t, fx.img, fx.dataOff, fx.dataN)
	out := filepath.Join(fx.dir, "preloaded.img")
	res := mustHostos(t, nil, nil, "preload", fx.img, "-o", out, "--compose", fx.compose,
		"--images", "one="+fx.one, "--images", "two="+fx.two, "--app-name", "demo", "--json",
		"--supervisor", supervisorImage+"="+fx.twoSaved)
	var summary struct {
		Changed  bool
		Services []struct{ Name, Image, ImageID string }
	}
	if err := json.Unmarshal([]byte(res), &summary); err != nil || !summary.Changed || len(summary.Services) != 2 {
		t.Fatalf("preload --json: %v\n%s", err, res)
	}
	if err := ext4.Check(t.Context(), out, fx.dataOff); err != nil {
		t.Errorf("resin-data after the preload: %v", err)
	}
	if got := hashOutside(t, out, fx.dataOff, fx.dataN); got != outside {
		t.Error("the preload changed bytes outside resin-data")
	}

	// apps.json decodes, validates, and names images the engine store holds.
	f, err := apps.Decode(readDataFile(t, out, fx.dataOff, fx.dataN, "/apps.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	var repos struct{ Repositories map[string]map[string]string }
	must(t, json.Unmarshal(readDataFile(t, out, fx.dataOff, fx.dataN, "/docker/image/overlay2/repositories.json"), &repos))
	services := map[string]string{}
	for _, app := range f.Apps {
		if app.Name != "demo" {
			t.Errorf("app name %q", app.Name)
		}
		for _, r := range app.Releases {
			for name, s := range r.Services {
				services[name] = s.Image
				found := false
				for _, refs := range repos.Repositories {
					if _, ok := refs[s.Image]; ok {
						found = true
					}
				}
				if !found {
					t.Errorf("service %s: image %s not in repositories.json %v", name, s.Image, repos.Repositories)
				}
			}
		}
	}
	if len(services) != 2 || services["one"] != "hostos-test/one:v1" || services["two"] != "hostos-test/two:v1" {
		t.Errorf("apps.json services: %v", services)
	}
	// The supervisor is tagged as balenaOS's docker-disk recipe tags it.
	for repo, tag := range map[string]string{"balena/amd64-supervisor": supervisorImage, "balena_supervisor": "balena_supervisor:v14.11.3"} {
		if _, ok := repos.Repositories[repo][tag]; !ok {
			t.Errorf("repositories.json has no %s: %v", tag, repos.Repositories)
		}
	}
	for _, p := range []string{"/resin-data", "/remove_me_to_reset"} {
		if _, err := ext4.ReadDir(mustOpenFile(t, out), fx.dataOff, fx.dataN, "/"); err != nil {
			t.Fatal(err)
		}
		out := debugfs(t, out, fx.dataOff, "stat "+p)
		if !strings.Contains(out, "Inode:") {
			t.Errorf("%s missing on resin-data: %s", p, out)
		}
	}

	// hostos inspect shows the release.
	insp := mustHostos(t, nil, nil, "inspect", out)
	for _, want := range []string{"demo", "hostos-test/one:v1", "hostos-test/two:v1"} {
		if !strings.Contains(insp, want) {
			t.Errorf("inspect does not show %q:\n%s", want, insp)
		}
	}

	// A second identical preload, in place, changes nothing.
	before := testtool.SHA256(t, out)
	mustHostos(t, nil, nil, "preload", out, "--compose", fx.compose, "--images", "one="+fx.one, "--images", "two="+fx.two, "--app-name", "demo",
		"--supervisor", supervisorImage+"="+fx.twoSaved)
	if testtool.SHA256(t, out) != before {
		t.Error("a second identical preload changed the image")
	}
	if l := leftovers(t, fx.dir); len(l) > 0 {
		t.Errorf("temporary files left: %v", l)
	}

	// The real engine lists and runs both images.
	// The supervisor came from a docker save archive: like docker load, no digest is recorded for it.
	engineRuns(t, out, fx.dataOff, map[string]string{
		"hostos-test/one:v1":         "hello from service one\n",
		"hostos-test/two:v1":         "hello from service two\n",
		"balena_supervisor:v14.11.3": "hello from service two\n",
		supervisorImage:              "hello from service two\n",
	}, "hostos-test/one:v1", "hostos-test/two:v1")
}

// supervisorImage is the name the fixture supervisor is preloaded under.
const supervisorImage = "balena/amd64-supervisor:v14.11.3"

// TestPreloadSupervisor preloads only a supervisor image (from an OCI layout, version given apart): it is
// tagged as balenaOS tags it, no apps.json is written into a fresh image, and an apps.json already there
// is kept byte for byte.
func TestPreloadSupervisor(t *testing.T) {
	fx := newPreloadFixture(t)
	out := filepath.Join(fx.dir, "supervisor.img")
	mustHostos(t, nil, nil, "preload", fx.img, "-o", out, "--supervisor", "balena/amd64-supervisor="+fx.one, "--supervisor-version", "14.11.3")
	var repos struct{ Repositories map[string]map[string]string }
	must(t, json.Unmarshal(readDataFile(t, out, fx.dataOff, fx.dataN, "/docker/image/overlay2/repositories.json"), &repos))
	if repos.Repositories["balena/amd64-supervisor"]["balena/amd64-supervisor:latest"] == "" ||
		repos.Repositories["balena_supervisor"]["balena_supervisor:v14.11.3"] == "" {
		t.Errorf("repositories.json: %v", repos.Repositories)
	}
	f, err := os.Open(out)
	must(t, err)
	defer f.Close()
	if _, err := ext4.ReadFile(f, fx.dataOff, fx.dataN, "/apps.json"); err == nil {
		t.Error("a supervisor-only preload wrote apps.json")
	}
	if err := ext4.Check(t.Context(), out, fx.dataOff); err != nil {
		t.Error(err)
	}

	single := filepath.Join(fx.dir, "single.yml")
	must(t, os.WriteFile(single, []byte("version: '2.1'\nservices:\n  app:\n    image: hostos-test/app:v1\n"), 0o644))
	withApps := filepath.Join(fx.dir, "with-apps.img")
	mustHostos(t, nil, nil, "preload", fx.img, "-o", withApps, "--compose", single, "--images", "app="+fx.one)
	before := readDataFile(t, withApps, fx.dataOff, fx.dataN, "/apps.json")
	mustHostos(t, nil, nil, "preload", withApps, "--supervisor", supervisorImage+"="+fx.two)
	if after := readDataFile(t, withApps, fx.dataOff, fx.dataN, "/apps.json"); !bytes.Equal(after, before) {
		t.Errorf("a supervisor preload changed apps.json:\n%s\n%s", before, after)
	}
	// A local source without a name, and a name without a version, are refused.
	for _, args := range [][]string{{"--supervisor", fx.two}, {"--supervisor", "balena/amd64-supervisor=" + fx.two}} {
		if r := hostos(t, nil, nil, append([]string{"preload", fx.img}, args...)...); r.code == 0 || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("preload %v: exit %d, %q", args, r.code, r.stderr)
		}
	}
}

// engineRuns starts a real dockerd on the data partition at off of img and checks that it lists each
// image of want (those of digested with a digest) and that running it prints what want says; e2fsck -fn
// finds the partition clean after the engine stopped.
func engineRuns(t *testing.T, img string, off int64, want map[string]string, digested ...string) {
	t.Helper()
	dockerd, client := enginetest.Need(t)
	mnt := enginetest.Mount(t, img, off)
	e := enginetest.Start(t, dockerd, client, filepath.Join(mnt, "docker"))
	list := e.Must("images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}")
	for _, ref := range digested {
		if !strings.Contains(list, ref+" sha256:") {
			t.Errorf("docker images --digests does not list %s with a digest:\n%s", ref, list)
		}
	}
	for ref, msg := range want {
		if !strings.Contains(list, ref+" ") {
			t.Errorf("docker images does not list %s:\n%s", ref, list)
		}
		if got := e.Must("run", "--rm", "--network", "none", ref); got != msg {
			t.Errorf("docker run %s printed %q, want %q", ref, got, msg)
		}
	}
	e.Stop()
	enginetest.UnmountUnder(t, mnt)
	if err := ext4.Check(t.Context(), img, off); err != nil {
		t.Errorf("resin-data after the engine ran: %v", err)
	}
}

func mustOpenFile(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// TestPreloadErrors gives preload bad inputs: each fails with one line, leaves the input's bytes as they
// were and leaves no temporary file.
func TestPreloadErrors(t *testing.T) {
	fx := newPreloadFixture(t)
	write := func(name, body string) string {
		p := filepath.Join(fx.dir, name)
		must(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	buildOnly := write("build.yml", "version: '2.1'\nservices:\n  app:\n    build: .\n")
	bind := write("bind.yml", "version: '2.1'\nservices:\n  app:\n    image: a:1\n    volumes:\n      - /etc:/host-etc\n")
	syntax := write("syntax.yml", "version: '2.1'\nservices:\n  app:\n    image: a:1\n   bad: [\n")
	single := write("single.yml", "version: '2.1'\nservices:\n  app:\n    image: hostos-test/app:v1\n")

	// An image that already holds an apps.json, and a compressed image.
	withApps := filepath.Join(fx.dir, "with-apps.img")
	mustHostos(t, nil, nil, "preload", fx.img, "-o", withApps, "--compose", single, "--images", "app="+fx.one)
	compressed := filepath.Join(fx.dir, "img.zst")
	run(t, testtool.Need(t, "zstd"), "-q", "-1", fx.img, "-o", compressed)

	cases := []struct {
		name, img, want string
		args            []string
	}{
		{"unknown image path", fx.img, "nothere", []string{"--compose", single, "--images", "app=" + filepath.Join(fx.dir, "nothere")}},
		{"wrong architecture", fx.img, "arm64", []string{"--compose", single, "--images", "app=" + fx.arm}},
		{"corrupted layer", fx.img, "digest", []string{"--compose", single, "--images", "app=" + fx.corrupt}},
		{"build-only service", fx.img, "build it first", []string{"--compose", buildOnly}},
		{"bind mount", fx.img, "/etc", []string{"--compose", bind}},
		{"compose syntax error", fx.img, "line", []string{"--compose", syntax}},
		{"not enough space", fx.img, "MiB short", []string{"--compose", single, "--images", "app=" + fx.big}},
		{"compressed without output", compressed, "--output", []string{"--compose", single, "--images", "app=" + fx.one}},
		{"existing apps.json", withApps, "--force", []string{"--image", fx.two}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sum := testtool.SHA256(t, c.img)
			r := hostos(t, nil, nil, append([]string{"preload", c.img}, c.args...)...)
			msg := strings.TrimSpace(r.stderr)
			if r.code == 0 || strings.Contains(msg, "\n") || !strings.Contains(msg, c.want) {
				t.Errorf("exit %d, stderr %q; want one line with %q", r.code, r.stderr, c.want)
			}
			if testtool.SHA256(t, c.img) != sum {
				t.Error("the input image changed")
			}
			if l := leftovers(t, fx.dir); len(l) > 0 {
				t.Errorf("temporary files left: %v", l)
			}
		})
	}
	// --force replaces the apps.json, and the compressed image preloads into --output.
	mustHostos(t, nil, nil, "preload", withApps, "--image", fx.two, "--force")
	out := filepath.Join(fx.dir, "from-zst.img")
	mustHostos(t, nil, nil, "preload", compressed, "-o", out, "--compose", single, "--images", "app="+fx.one)
	if err := ext4.Check(t.Context(), out, fx.dataOff); err != nil {
		t.Error(err)
	}
}

// TestPreloadKilled kills preload (SIGKILL to it and its debugfs) while it works on a release with a
// 60 MB incompressible layer: when its work directory appears beside the image, as soon as debugfs runs
// and again deep into debugfs's write, and at points spread over a complete run's duration. The image is
// then byte-identical to before or the complete preloaded image, never anything between; killed while
// debugfs runs, it is the image as it was.
func TestPreloadKilled(t *testing.T) {
	fx := newPreloadFixture(t)
	b := newFixture(t, "genericx86-64-ext", "msdos", "[sizes]\nboot = 40\nroot = 64\nstate = 8\ndata = 160\n")
	mustHostos(t, nil, nil, "build", "--spec", b.spec, "-o", b.out)
	noise := make([]byte, 60<<20)
	rand.New(rand.NewSource(1)).Read(noise)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Name: "noise", Size: int64(len(noise)), Mode: 0o644, ModTime: fixtureTime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}))
	_, err := tw.Write(noise)
	must(t, err)
	must(t, tw.Close())
	noiseTar := buf.Bytes()
	big, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(noiseTar)), nil },
		tarball.WithCompressionLevel(gzip.BestSpeed))
	must(t, err)
	heavy := writeLayout(t, filepath.Join(fx.dir, "heavy"), "amd64", fx.base, big)
	dir := t.TempDir()
	args := []string{"preload", "", "--compose", fx.compose, "--images", "one=" + heavy, "--images", "two=" + fx.two}
	env := append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")

	// The complete result, for comparison, and how long a whole run takes.
	done := filepath.Join(dir, "done.img")
	run(t, "cp", "--sparse=always", b.out, done)
	args[1] = done
	began := time.Now()
	mustHostos(t, []string{"SOURCE_DATE_EPOCH=1700000000"}, nil, args...)
	whole := time.Since(began)
	complete := testtool.SHA256(t, done)
	original := testtool.SHA256(t, b.out)
	must(t, os.Remove(done))

	type point struct {
		name string
		// wait returns once the kill point is reached, or false when hostos ended first.
		wait func(pid int, exited <-chan struct{}) bool
		// midWrite: the kill lands before the rename, so the image must be the original.
		midWrite bool
	}
	poll := func(cond func(pid int) bool) func(int, <-chan struct{}) bool {
		return func(pid int, exited <-chan struct{}) bool {
			for !cond(pid) {
				select {
				case <-exited:
					return false
				case <-time.After(2 * time.Millisecond):
				}
			}
			return true
		}
	}
	after := func(d time.Duration) func(int, <-chan struct{}) bool {
		return func(_ int, exited <-chan struct{}) bool {
			select {
			case <-exited:
				return false
			case <-time.After(d):
				return true
			}
		}
	}
	workDir := poll(func(int) bool { return len(leftovers(t, dir)) > 0 })
	debugfs := poll(func(pid int) bool { return childNamed(pid, "debugfs") })
	points := []point{
		{"work directory appears", workDir, true},
		{"debugfs starts", debugfs, true},
		{"debugfs well under way", func(pid int, exited <-chan struct{}) bool {
			return debugfs(pid, exited) && after(150*time.Millisecond)(pid, exited) && childNamed(pid, "debugfs")
		}, true},
	}
	for _, f := range []int{20, 50, 80, 95} {
		points = append(points, point{fmt.Sprintf("%d%% of a whole run", f), after(whole * time.Duration(f) / 100), false})
	}
	for _, p := range points {
		img := filepath.Join(dir, "victim.img")
		run(t, "cp", "--sparse=always", b.out, img)
		args[1] = img
		cmd := exec.Command(hostosBin, args...)
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		must(t, cmd.Start())
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		reached := p.wait(cmd.Process.Pid, exited)
		// The process group this test started: hostos and the debugfs it may be running.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if !reached && p.midWrite {
			t.Errorf("%s: hostos ended before the kill point was seen", p.name)
		}
		switch got := testtool.SHA256(t, img); {
		case got == original:
			t.Logf("killed when %s: the input as it was", p.name)
		case got == complete && p.midWrite && reached:
			t.Errorf("killed when %s, before the switch: the image is already the complete preload", p.name)
		case got == complete:
			t.Logf("killed when %s: the complete preload", p.name)
		default:
			t.Errorf("killed when %s: the image is neither the input nor the complete preload", p.name)
		}
		// Leftover work directories of a killed run are allowed; remove them for the next round.
		for _, l := range leftovers(t, dir) {
			os.RemoveAll(filepath.Join(dir, l))
		}
		os.Remove(img)
	}
}

// childNamed tells whether process pid has a child whose command name is name.
func childNamed(pid int, name string) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || close < open {
			continue
		}
		fields := strings.Fields(string(b[close+1:]))
		if string(b[open+1:close]) == name && len(fields) > 1 && fields[1] == fmt.Sprint(pid) {
			return true
		}
	}
	return false
}

// partBytes hashes each partition's bytes by sfdisk node number, and returns the table.
func partBytes(t *testing.T, img string) (sfdiskTable, map[int]string) {
	t.Helper()
	pt := sfdiskJSON(t, img)
	f := mustOpenFile(t, img)
	sums := map[int]string{}
	for _, p := range pt.Partitions {
		var n int
		fmt.Sscanf(strings.TrimPrefix(p.Node, img), "%d", &n)
		h := sha256.New()
		_, err := io.Copy(h, io.NewSectionReader(f, p.Start*512, p.Size*512))
		must(t, err)
		sums[n] = hex.EncodeToString(h.Sum(nil))
	}
	return pt, sums
}

// TestPreloadGrow preloads an image too big for resin-data: refused without --grow, written with it on
// msdos (extended and logical resin-data grown) and GPT (entry grown, backup at the new end). sfdisk
// reads the grown layout, every other partition's bytes are unchanged, e2fsck -fn is clean and on
// msdos a real dockerd runs the image.
func TestPreloadGrow(t *testing.T) {
	fx := newPreloadFixture(t)
	testtool.Need(t, "resize2fs")
	compose := filepath.Join(fx.dir, "big.yml")
	must(t, os.WriteFile(compose, []byte("version: '2.1'\nservices:\n  app:\n    image: hostos-test/big:v1\n"), 0o644))
	gpt := newFixture(t, "generic-amd64-efi", "gpt", "[sizes]\nboot = 40\nroot = 64\nstate = 8\ndata = 64\n")
	mustHostos(t, nil, nil, "build", "--spec", gpt.spec, "-o", gpt.out)
	for _, c := range []struct {
		name, img string
		data      int // sfdisk's number of resin-data
	}{{"msdos", fx.img, 6}, {"gpt", gpt.out, 5}} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"preload", c.img, "--compose", compose, "--images", "app=" + fx.big}
			sum := testtool.SHA256(t, c.img)
			if r := hostos(t, nil, nil, args...); r.code == 0 || !strings.Contains(r.stderr, "MiB short") || !strings.Contains(r.stderr, "--grow") {
				t.Fatalf("preload without --grow: exit %d, %s", r.code, r.stderr)
			}
			if testtool.SHA256(t, c.img) != sum {
				t.Fatal("a refused preload changed the image")
			}
			before, sums := partBytes(t, c.img)
			oldSize := fileSize(t, c.img)
			out := filepath.Join(t.TempDir(), "grown.img")
			mustHostos(t, nil, nil, append(args, "--grow", "-o", out)...)
			after, grownSums := partBytes(t, out)
			grew := fileSize(t, out) - oldSize
			if grew <= 0 || grew%(4<<20) != 0 {
				t.Errorf("the image grew by %d bytes, want a positive multiple of 4 MiB", grew)
			}
			if len(after.Partitions) != len(before.Partitions) {
				t.Fatalf("sfdisk sees %d partitions, had %d", len(after.Partitions), len(before.Partitions))
			}
			var data, ext sfdiskPart
			for i, p := range after.Partitions {
				b := before.Partitions[i]
				var n int
				fmt.Sscanf(strings.TrimPrefix(p.Node, out), "%d", &n)
				switch {
				case n == c.data:
					data = p
					if p.Start != b.Start || p.Size*512 != b.Size*512+grew {
						t.Errorf("resin-data: start %d size %d sectors, was %d %d; the image grew %d bytes", p.Start, p.Size, b.Start, b.Size, grew)
					}
				case c.name == "msdos" && n == 4:
					ext = p
				default:
					if p != (sfdiskPart{Node: out + strings.TrimPrefix(b.Node, c.img), Start: b.Start, Size: b.Size, Type: b.Type, Bootable: b.Bootable, Name: b.Name}) {
						t.Errorf("partition %d changed: %+v, was %+v", n, p, b)
					} else if grownSums[n] != sums[n] {
						t.Errorf("partition %d: its bytes changed", n)
					}
				}
			}
			if c.name == "msdos" && ext.Start+ext.Size != data.Start+data.Size {
				t.Errorf("the extended partition ends at sector %d, resin-data at %d", ext.Start+ext.Size, data.Start+data.Size)
			}
			if c.name == "gpt" {
				if out := run(t, testtool.Need(t, "sfdisk"), "--verify", out); !strings.Contains(out, "No errors detected") {
					t.Errorf("sfdisk --verify: %s", out)
				}
			}
			if err := ext4.Check(t.Context(), out, data.Start*512); err != nil {
				t.Errorf("resin-data after a growing preload: %v", err)
			}
			if c.name == "msdos" {
				engineRuns(t, out, data.Start*512, map[string]string{"hostos-test/big:v1": "hello from a big image\n"}, "hostos-test/big:v1")
			}
		})
	}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	must(t, err)
	return fi.Size()
}

// TestBuildPreload builds an image from a spec with a [preload] table (a compose file and its images,
// relative to the spec): resin-data holds apps.json naming the app and the engine store with both
// images, e2fsck -fn is clean, and a spec naming both a compose file and an image is refused by key.
func TestBuildPreload(t *testing.T) {
	fx := newPreloadFixture(t)
	b := newFixture(t, "genericx86-64-ext", "msdos", "[sizes]\nboot = 40\nroot = 64\nstate = 8\ndata = 64\n")
	run(t, "cp", "-a", fx.one, filepath.Join(filepath.Dir(b.spec), "one-oci"))
	run(t, "cp", fx.compose, filepath.Join(filepath.Dir(b.spec), "docker-compose.yml"))
	spec, err := os.ReadFile(b.spec)
	must(t, err)
	with := string(spec) + fmt.Sprintf(`
[preload]
compose = "docker-compose.yml"
app_name = "built"
pin = true
images = { one = "one-oci", two = %q }
`, fx.two)
	must(t, os.WriteFile(b.spec, []byte(with), 0o644))
	mustHostos(t, []string{"SOURCE_DATE_EPOCH=1700000000"}, nil, "build", "--spec", b.spec, "-o", b.out)
	var off, n int64
	for _, p := range sfdiskJSON(t, b.out).Partitions {
		if strings.HasSuffix(p.Node, "6") {
			off, n = p.Start*512, p.Size*512
		}
	}
	f, err := apps.Decode(readDataFile(t, b.out, off, n, "/apps.json"))
	must(t, err)
	must(t, f.Validate())
	if !f.PinDevice {
		t.Error("pin = true did not set pinDevice")
	}
	for _, app := range f.Apps {
		if app.Name != "built" {
			t.Errorf("app name %q, want built", app.Name)
		}
	}
	var repos struct{ Repositories map[string]map[string]string }
	must(t, json.Unmarshal(readDataFile(t, b.out, off, n, "/docker/image/overlay2/repositories.json"), &repos))
	for _, name := range []string{"hostos-test/one", "hostos-test/two"} {
		if repos.Repositories[name][name+":v1"] == "" {
			t.Errorf("repositories.json has no %s:v1: %v", name, repos.Repositories)
		}
	}
	if err := ext4.Check(t.Context(), b.out, off); err != nil {
		t.Error(err)
	}
	if l := leftovers(t, filepath.Dir(b.out)); len(l) > 0 {
		t.Errorf("temporary files left: %v", l)
	}

	bad := string(spec) + "\n[preload]\ncompose = \"docker-compose.yml\"\nimage = \"one-oci\"\n"
	must(t, os.WriteFile(b.spec, []byte(bad), 0o644))
	r := hostos(t, nil, nil, "build", "--spec", b.spec, "-o", filepath.Join(t.TempDir(), "bad.img"))
	if r.code == 0 || !strings.Contains(r.stderr, "preload") {
		t.Errorf("a [preload] with compose and image: exit %d, %s", r.code, r.stderr)
	}
}
