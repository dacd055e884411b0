package release

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hostos/hostos/hostapp/container"
)

// DefaultTag is the image name prefix of built services: what preload names a build-only service's image
// on the device too.
const DefaultTag = "preloaded"

// ErrNoBuilder means no docker CLI that can drive BuildKit was found.
var ErrNoBuilder = errors.New("no docker CLI that can build with BuildKit")

// ErrNoEmulation means a build for a foreign architecture runs commands and the host has no QEMU user
// emulation registered for it.
var ErrNoEmulation = errors.New("no QEMU user emulation for the architecture")

// BuildOptions is one release build.
type BuildOptions struct {
	// Docker is the docker CLI to build with; "" picks the first docker on PATH that can drive
	// BuildKit (see FindDocker). The daemon is the one DOCKER_HOST names, as the CLI itself decides.
	Docker string
	// Tag is the image name prefix: service s is tagged TAG/s:latest, s in lowercase (default DefaultTag).
	Tag string
	// OutDir receives one docker save archive per built service, SERVICE.tar; it is created if missing.
	OutDir string
	// BinfmtDir is where the kernel lists its binfmt_misc handlers (default /proc/sys/fs/binfmt_misc).
	BinfmtDir string
	// Output receives the builder's output line by line; Log receives what Build does.
	Output func(service, line string)
	Log    func(msg string)
}

// Built is what a build produced.
type Built struct {
	Platform string  `json:"platform"`
	Docker   string  `json:"docker"`
	Images   []Image `json:"images"`
	// Pulled are the services with only an image:, which preload reads from their registry.
	Pulled []string `json:"pulled,omitempty"`
}

// Image is one built service.
type Image struct {
	Service string `json:"service"`
	Ref     string `json:"ref"` // its tag in the builder's engine
	ID      string `json:"id"`
	Archive string `json:"archive"` // docker save archive
}

// Archives maps each built service to its archive, as preload.Options.Images takes them.
func (b *Built) Archives() map[string]string {
	m := make(map[string]string, len(b.Images))
	for _, im := range b.Images {
		m[im.Service] = im.Archive
	}
	return m
}

// Build builds every service of r that has a build context with Docker's BuildKit for r's architecture,
// and saves each image to OutDir. It stops at the first failure, whose error carries the builder's last
// lines; archives are written under a temporary name and renamed when complete.
func Build(ctx context.Context, r *Rendered, o BuildOptions) (*Built, error) {
	if o.OutDir == "" {
		return nil, errors.New("release build: no output directory")
	}
	if o.Tag == "" {
		o.Tag = DefaultTag
	}
	logf := o.Log
	if logf == nil {
		logf = func(string) {}
	}
	plat, err := container.PlatformOf(r.Arch)
	if err != nil {
		return nil, fmt.Errorf("release build: %w", err)
	}
	var builds []Service
	b := &Built{Platform: plat.String()}
	for _, s := range r.Services {
		if s.Context == "" {
			b.Pulled = append(b.Pulled, s.Name)
			logf(fmt.Sprintf("service %s: image %s, not built (preload reads it from its registry)", s.Name, s.Image))
			continue
		}
		if _, err := ParseTag(o.Tag + "/" + strings.ToLower(s.Name)); err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		builds = append(builds, s)
	}
	if len(builds) == 0 {
		return b, nil
	}
	d, err := FindDocker(ctx, o.Docker)
	if err != nil {
		return nil, err
	}
	b.Docker = d.Path
	server, err := d.ServerArch(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	for _, s := range builds {
		df, err := os.ReadFile(filepath.Join(s.Context, s.Dockerfile))
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		if NeedsEmulation(df) && d.Local() {
			if err := CheckEmulation(o.BinfmtDir, plat, server); err != nil {
				return nil, fmt.Errorf("service %s: %w", s.Name, err)
			}
		}
		ref := o.Tag + "/" + strings.ToLower(s.Name) + ":latest"
		logf(fmt.Sprintf("service %s: building %s for %s with %s", s.Name, ref, plat, d))
		out := func(line string) {
			if o.Output != nil {
				o.Output(s.Name, line)
			}
		}
		id, err := d.Build(ctx, ImageBuild{Context: s.Context, Dockerfile: s.Dockerfile, Args: s.Args, Platform: plat.String(), Ref: ref}, out)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		archive := filepath.Join(o.OutDir, s.Name+".tar")
		if err := d.Save(ctx, ref, archive); err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		b.Images = append(b.Images, Image{Service: s.Name, Ref: ref, ID: id, Archive: archive})
	}
	return b, nil
}

// ParseTag checks that ref is an image name docker accepts for a tag (lowercase path components).
func ParseTag(ref string) (string, error) {
	name, _, _ := strings.Cut(ref, ":")
	if !tagName().MatchString(name) {
		return "", fmt.Errorf("image name %q: want lowercase letters, digits and separators (. _ - /)", ref)
	}
	return ref, nil
}

var tagName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
})

// Docker is a docker CLI that can drive BuildKit: through the buildx plugin (docker buildx build --load),
// or a 20.10 to 22.x client's builtin BuildKit (DOCKER_BUILDKIT=1 docker build).
type Docker struct {
	Path    string
	Version string
	Buildx  bool
}

func (d *Docker) String() string {
	how := "builtin BuildKit"
	if d.Buildx {
		how = "buildx"
	}
	return fmt.Sprintf("%s %s (%s)", d.Path, d.Version, how)
}

// FindDocker returns the docker CLI at path, or when path is "" the first docker on PATH that has the
// buildx plugin or is a 20.10 to 22.x client (docker 23 and later build with BuildKit only through buildx).
func FindDocker(ctx context.Context, path string) (*Docker, error) {
	if path != "" {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("docker CLI %s: %w", path, err)
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return nil, fmt.Errorf("docker CLI %s: not an executable file", path)
		}
		d, why := probeDocker(ctx, path)
		if d == nil {
			return nil, fmt.Errorf("docker CLI %s: %s: %w; %s", path, why, ErrNoBuilder, installHint)
		}
		return d, nil
	}
	var tried []string
	seen := map[string]bool{}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, "docker")
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			real = p
		}
		if seen[real] {
			continue
		}
		seen[real] = true
		d, why := probeDocker(ctx, p)
		if d != nil {
			return d, nil
		}
		tried = append(tried, p+" ("+why+")")
	}
	if len(tried) == 0 {
		return nil, fmt.Errorf("no docker on PATH: %w; %s", ErrNoBuilder, installHint)
	}
	return nil, fmt.Errorf("%s: %w; %s", strings.Join(tried, ", "), ErrNoBuilder, installHint)
}

const installHint = "install the docker buildx plugin (docker-buildx-plugin, or docker-buildx on Debian) or Debian's docker.io, or name a CLI with --docker or HOSTOS_DOCKER"

// probeTimeout bounds each question probeDocker asks a CLI (docker version may wait for a daemon).
const probeTimeout = 30 * time.Second

// probeDocker says whether the CLI at p can drive BuildKit, and if not why.
func probeDocker(ctx context.Context, p string) (*Docker, string) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	// The client's version is printed even when no daemon answers.
	out, _ := exec.CommandContext(ctx, p, "version", "--format", "{{.Client.Version}}").Output()
	version := strings.TrimSpace(string(out))
	major, minor, ok := parseVersion(version)
	if !ok {
		return nil, fmt.Sprintf("no client version in %q", firstLine(version))
	}
	if err := exec.CommandContext(ctx, p, "buildx", "version").Run(); err == nil {
		return &Docker{Path: p, Version: version, Buildx: true}, ""
	}
	if major == 20 && minor >= 10 || major == 21 || major == 22 {
		return &Docker{Path: p, Version: version}, ""
	}
	return nil, "client " + version + " without buildx"
}

// parseVersion reads MAJOR.MINOR from a docker version such as 20.10.24+dfsg1.
func parseVersion(v string) (major, minor int, ok bool) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return major, minor, true
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Local tells whether the daemon runs on this machine (DOCKER_HOST unset or a unix socket), so that
// this machine's binfmt handlers are the ones its builds use.
func (d *Docker) Local() bool {
	h := os.Getenv("DOCKER_HOST")
	return h == "" || strings.HasPrefix(h, "unix://")
}

// ServerArch asks the daemon for its architecture (GOARCH), which also checks that it answers.
func (d *Docker) ServerArch(ctx context.Context) (string, error) {
	out, err := d.run(ctx, nil, "version", "--format", "{{.Server.Arch}}")
	if err != nil {
		return "", fmt.Errorf("docker daemon: %w", err)
	}
	return strings.TrimSpace(out), nil
}

// ImageBuild is one image to build.
type ImageBuild struct {
	Context    string // build context directory
	Dockerfile string // relative to Context
	Args       map[string]string
	Platform   string // os/arch[/variant]
	Ref        string // tag
}

// tailLines is how many of the builder's last lines a failed build's error carries.
const tailLines = 6

// Build builds b with BuildKit, passing the builder's output to out line by line, and returns the
// image id. A failed build's error carries the builder's last lines.
func (d *Docker) Build(ctx context.Context, b ImageBuild, out func(line string)) (string, error) {
	iid, err := os.CreateTemp("", "hostos-iid-")
	if err != nil {
		return "", err
	}
	iid.Close()
	defer os.Remove(iid.Name())
	args := []string{"build"}
	if d.Buildx {
		args = []string{"buildx", "build", "--load"}
	}
	args = append(args, "--platform", b.Platform, "--progress", "plain", "--iidfile", iid.Name(),
		"-f", filepath.Join(b.Context, b.Dockerfile), "-t", b.Ref)
	keys := make([]string, 0, len(b.Args))
	for k := range b.Args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--build-arg", k+"="+b.Args[k])
	}
	args = append(args, b.Context)
	cmd := exec.CommandContext(ctx, d.Path, args...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=1")
	lw := &lineWriter{out: out}
	cmd.Stdout, cmd.Stderr = lw, lw
	err = cmd.Run()
	lw.Close()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("docker build failed (%v): %s", err, strings.Join(lw.tail, " | "))
	}
	id, err := os.ReadFile(iid.Name())
	if err != nil || len(bytes.TrimSpace(id)) == 0 {
		return "", fmt.Errorf("docker build wrote no image id: %v", err)
	}
	return string(bytes.TrimSpace(id)), nil
}

// Save writes the image ref as a docker save archive to archive, under a temporary name renamed into
// place when complete.
func (d *Docker) Save(ctx context.Context, ref, archive string) error {
	tmp := archive + ".part"
	if _, err := d.run(ctx, nil, "save", "-o", tmp, ref); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, archive); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save %s: %w", ref, err)
	}
	return nil
}

// run runs the CLI and returns its standard output; an error carries its last lines of standard error.
func (d *Docker) run(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.Path, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("docker %s: %s", args[0], oneLine(msg))
	}
	return stdout.String(), nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// lineWriter passes whole lines to out and keeps the last tailLines.
type lineWriter struct {
	mu   sync.Mutex
	out  func(string)
	buf  []byte
	tail []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
}

func (w *lineWriter) line(s string) {
	s = strings.TrimRight(s, "\r")
	if strings.TrimSpace(s) == "" {
		return
	}
	if w.out != nil {
		w.out(s)
	}
	if noise().MatchString(s) {
		return
	}
	w.tail = append(w.tail, strings.TrimSpace(s))
	if len(w.tail) > tailLines {
		w.tail = w.tail[len(w.tail)-tailLines:]
	}
}

// noise are the builder's lines a failed build's error leaves out: step digests, timings, rules.
var noise = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^#\d+ (sha256:[0-9a-f]+|DONE .*|CACHED|transferring .*)$|^-+$`)
})

// NeedsEmulation tells whether a Dockerfile runs commands in the image being built (a RUN instruction
// in any stage) and so needs the target architecture's emulation on a foreign host. A Dockerfile whose
// stages name their own platform (FROM --platform=...) is left to the builder.
func NeedsEmulation(dockerfile []byte) bool {
	run := false
	sc := bufio.NewScanner(bytes.NewReader(dockerfile))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	continued := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		wasContinued := continued
		continued = strings.HasSuffix(line, "\\")
		if wasContinued || line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch strings.ToUpper(f[0]) {
		case "RUN":
			run = true
		case "FROM":
			if len(f) > 1 && strings.HasPrefix(f[1], "--platform") {
				return false
			}
		}
	}
	return run
}

// qemuNames are the binfmt_misc handler names of QEMU user emulation, by GOARCH.
var qemuNames = map[string]string{"arm64": "qemu-aarch64", "arm": "qemu-arm", "amd64": "qemu-x86_64", "386": "qemu-i386",
	"ppc64le": "qemu-ppc64le", "s390x": "qemu-s390x", "riscv64": "qemu-riscv64"}

// CheckEmulation checks that a daemon on a server architecture host can run commands for plat: the same
// architecture, one the host runs natively (386 on amd64, arm on arm64), or an enabled qemu binfmt_misc
// handler in dir (default /proc/sys/fs/binfmt_misc).
func CheckEmulation(dir string, plat v1.Platform, server string) error {
	want := plat.Architecture
	if want == server || want == "386" && server == "amd64" || want == "arm" && server == "arm64" {
		return nil
	}
	if dir == "" {
		dir = "/proc/sys/fs/binfmt_misc"
	}
	name, ok := qemuNames[want]
	if !ok {
		return fmt.Errorf("%s on %s: %w", plat, server, ErrNoEmulation)
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err == nil && strings.HasPrefix(string(b), "enabled") {
		return nil
	}
	return fmt.Errorf("a RUN step for %s on this %s host needs %s in %s, which is missing or disabled: %w; install qemu-user-static and binfmt-support (or register it with tonistiigi/binfmt)",
		plat, server, name, dir, ErrNoEmulation)
}
