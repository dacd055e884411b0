package release

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v4"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/config/compose"
	"github.com/hostos/hostos/partition/disk"
)

// MaxDockerfileBytes bounds a Dockerfile, a Dockerfile template and a package.json Render reads.
const MaxDockerfileBytes = 1 << 20

// Options are the release a project is rendered for.
type Options struct {
	DeviceType  string       // device-type slug: the Dockerfile choice and the template variables
	AppName     string       // %%BALENA_APP_NAME%%; default the project folder's name
	ReleaseHash string       // %%BALENA_RELEASE_HASH%%; default "unavailable"
	Log         func(string) // warnings: compose fields balena ignores, template variables that do not exist
}

// Service is one service of a rendered release.
type Service struct {
	Name       string            `json:"name"`                 // compose service name
	Context    string            `json:"context,omitempty"`    // absolute path of the rendered build context ("" for image-only services)
	Dockerfile string            `json:"dockerfile,omitempty"` // Dockerfile name relative to Context (always a plain rendered Dockerfile)
	Args       map[string]string `json:"args,omitempty"`       // build args from the compose file
	Image      string            `json:"image,omitempty"`      // image: of a service with no build
}

// Rendered is a project rendered for one device type.
type Rendered struct {
	Dir         string    `json:"dir"`          // the output folder
	ComposeFile string    `json:"compose_file"` // Dir/docker-compose.yml: the project's compose file, build contexts pointing into Dir
	Compose     []byte    `json:"-"`            // its contents
	Services    []Service `json:"services"`
	Arch        string    `json:"arch"`    // the device type's balena arch (%%BALENA_ARCH%%)
	Machine     string    `json:"machine"` // %%BALENA_MACHINE_NAME%%: the device-type slug, as balena's builder renders it
}

// composeNames are the compose files balena's builder looks for at the top of a project, in order.
var composeNames = []string{"docker-compose.yml", "docker-compose.yaml"}

// Render resolves the project in projectDir for o.DeviceType and writes the result into outDir, which must
// be new or empty and outside the project: one build context per build service under outDir/services/NAME,
// with the chosen Dockerfile rendered as a plain one, and outDir/docker-compose.yml. The project is never
// written to. On error outDir is removed if Render created it.
func Render(ctx context.Context, projectDir, outDir string, o Options) (res *Rendered, err error) {
	logf := o.Log
	if logf == nil {
		logf = func(string) {}
	}
	m, err := config.LookupMachine(o.DeviceType)
	if err != nil {
		return nil, err
	}
	if projectDir, err = filepath.Abs(projectDir); err != nil {
		return nil, fmt.Errorf("project: %w", err)
	}
	if projectDir, err = filepath.EvalSymlinks(projectDir); err != nil {
		return nil, fmt.Errorf("project: %w", err)
	}
	if fi, err := os.Stat(projectDir); err != nil {
		return nil, fmt.Errorf("project: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("project %s: not a folder", projectDir)
	}
	if outDir == "" {
		return nil, errors.New("release render: no output folder")
	}
	if outDir, err = filepath.Abs(outDir); err != nil {
		return nil, fmt.Errorf("output folder: %w", err)
	}
	resolvedOut, err := resolveMissing(outDir)
	if err != nil {
		return nil, fmt.Errorf("output folder: %w", err)
	}
	if within(projectDir, resolvedOut) {
		return nil, fmt.Errorf("output folder %s is inside the project %s; render writes nothing into the project", outDir, projectDir)
	}
	created, err := makeEmptyDir(outDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && created {
			os.RemoveAll(outDir)
		}
	}()

	appName := o.AppName
	if appName == "" {
		appName = filepath.Base(projectDir)
	}
	hash := o.ReleaseHash
	if hash == "" {
		hash = "unavailable"
	}
	r := renderer{ctx: ctx, project: projectDir, machine: m, app: appName, hash: hash, log: logf}

	data, proj, err := r.readCompose()
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("compose file: %w", err)
	}
	absolutePaths(&doc, projectDir)
	res = &Rendered{Dir: outDir, ComposeFile: filepath.Join(outDir, "docker-compose.yml"), Arch: m.Arch, Machine: m.Slug}
	for _, s := range proj.Services {
		if s.Build == nil {
			res.Services = append(res.Services, Service{Name: s.Name, Image: s.Image})
			continue
		}
		svcNode := mapValue(mapValue(doc.Content[0], "services"), s.Name)
		if svcNode == nil || svcNode.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("service %s: not written out under services: (a YAML merge or alias); render rewrites only services the file spells out", s.Name)
		}
		explicit := ""
		if b := mapValue(svcNode, "build"); b != nil && b.Kind == yaml.MappingNode {
			if d := mapValue(b, "dockerfile"); d != nil && d.Kind == yaml.ScalarNode {
				explicit = s.Build.Dockerfile
			}
		}
		rel := path.Join("services", s.Name)
		dst := filepath.Join(outDir, filepath.FromSlash(rel))
		name, err := r.service(s, explicit, dst)
		if err != nil {
			return nil, err
		}
		setBuild(svcNode, "./"+rel, name)
		res.Services = append(res.Services, Service{Name: s.Name, Context: dst, Dockerfile: name, Args: s.Build.Args})
	}
	sort.Slice(res.Services, func(i, j int) bool { return res.Services[i].Name < res.Services[j].Name })

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("resolved compose file: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("resolved compose file: %w", err)
	}
	res.Compose = buf.Bytes()
	if err := os.WriteFile(res.ComposeFile, res.Compose, 0o644); err != nil {
		return nil, fmt.Errorf("resolved compose file: %w", err)
	}
	return res, nil
}

type renderer struct {
	ctx       context.Context
	project   string // absolute, symlinks resolved
	machine   config.Machine
	app, hash string
	log       func(string)
}

// readCompose returns the project's compose file, or balena's default one when the project is a lone
// Dockerfile, Dockerfile.template or package.json, and the project it describes.
func (r *renderer) readCompose() ([]byte, *compose.Project, error) {
	for _, name := range composeNames {
		p := filepath.Join(r.project, name)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := r.inside(p); err != nil {
			return nil, nil, err
		}
		data, err := disk.ReadInput(p, "compose file", compose.MaxSize)
		if err != nil {
			return nil, nil, err
		}
		proj, warnings, err := compose.Parse(data, compose.WithFilename(name), compose.WithDir(r.project), compose.AllowBuild())
		if err != nil {
			return nil, nil, err
		}
		for _, w := range warnings {
			r.log(w)
		}
		return data, proj, nil
	}
	entries, err := os.ReadDir(r.project)
	if err != nil {
		return nil, nil, fmt.Errorf("project: %w", err)
	}
	for _, e := range entries {
		if n := e.Name(); n == "Dockerfile" || strings.HasPrefix(n, "Dockerfile.") || n == "package.json" {
			return compose.DefaultFile(""), compose.Default(""), nil
		}
	}
	return nil, nil, fmt.Errorf("project %s: no docker-compose.yml, Dockerfile, Dockerfile.template or package.json", r.project)
}

// service renders the build context of s into dst and returns the rendered Dockerfile's name relative to
// dst. explicit is the compose file's build.dockerfile, "" when the file does not give one.
func (r *renderer) service(s compose.Service, explicit, dst string) (string, error) {
	c := s.Build.Context
	if c == "" {
		c = "."
	}
	if strings.Contains(c, "://") || strings.HasPrefix(c, "git@") {
		return "", fmt.Errorf("service %s: build context %s is not a folder of the project", s.Name, c)
	}
	if !filepath.IsAbs(c) {
		c = filepath.Join(r.project, c)
	}
	src, err := filepath.EvalSymlinks(c)
	if err != nil {
		return "", fmt.Errorf("service %s: build context: %w", s.Name, err)
	}
	if !within(r.project, src) {
		return "", fmt.Errorf("service %s: build context %s is outside the project", s.Name, c)
	}
	if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("service %s: build context %s is not a folder", s.Name, c)
	}

	chosen, outName, render, err := r.chooseDockerfile(s.Name, src, explicit)
	if err != nil {
		return "", err
	}
	var dockerfile []byte
	if chosen == "package.json" {
		if dockerfile, err = r.nodeDockerfile(s.Name, src); err != nil {
			return "", err
		}
	} else {
		p := filepath.Join(src, filepath.FromSlash(chosen))
		if err := r.inside(p); err != nil {
			return "", fmt.Errorf("service %s: %w", s.Name, err)
		}
		if dockerfile, err = disk.ReadInput(p, "service "+s.Name+": "+chosen, MaxDockerfileBytes); err != nil {
			return "", err
		}
		if render {
			dockerfile = r.render(s.Name, chosen, dockerfile)
		}
	}
	if err := r.copyContext(s.Name, src, dst); err != nil {
		return "", err
	}
	out := filepath.Join(dst, filepath.FromSlash(outName))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("service %s: %w", s.Name, err)
	}
	os.Remove(out) // a copied file or link of that name gives way to the rendered Dockerfile
	if err := os.WriteFile(out, dockerfile, 0o644); err != nil {
		return "", fmt.Errorf("service %s: %w", s.Name, err)
	}
	return outName, nil
}

// chooseDockerfile picks the file a build context is built from, in balena's order of preference, and
// returns it (slash-separated, relative to the context), the name the rendered Dockerfile takes and
// whether the file is a template.
func (r *renderer) chooseDockerfile(service, src, explicit string) (chosen, outName string, render bool, err error) {
	endings := []string{"." + r.machine.Slug, "." + r.machine.Arch, ".template"}
	if explicit != "" {
		e := path.Clean(filepath.ToSlash(explicit))
		if path.IsAbs(e) || e == ".." || strings.HasPrefix(e, "../") {
			return "", "", false, fmt.Errorf("service %s: build.dockerfile %s is not inside the build context", service, explicit)
		}
		if _, err := os.Lstat(filepath.Join(src, filepath.FromSlash(e))); err != nil {
			return "", "", false, fmt.Errorf("service %s: build.dockerfile %s: not found in the build context", service, explicit)
		}
		for _, end := range endings {
			if strings.HasSuffix(e, end) && len(e) > len(end) {
				return e, strings.TrimSuffix(e, end), true, nil
			}
		}
		return e, e, false, nil
	}
	for _, end := range endings {
		if regular(filepath.Join(src, "Dockerfile"+end)) {
			return "Dockerfile" + end, "Dockerfile", true, nil
		}
	}
	if regular(filepath.Join(src, "Dockerfile")) {
		return "Dockerfile", "Dockerfile", false, nil
	}
	if regular(filepath.Join(src, "package.json")) {
		return "package.json", "Dockerfile", false, nil
	}
	return "", "", false, fmt.Errorf("service %s: no Dockerfile.%s, Dockerfile.%s, Dockerfile.template, Dockerfile or package.json in %s",
		service, r.machine.Slug, r.machine.Arch, src)
}

// regular reports whether p is a regular file, following symlinks.
func regular(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// render replaces the template variables of a Dockerfile, leaving comment lines alone as balena does, and
// reports the variables that do not exist.
func (r *renderer) render(service, name string, data []byte) []byte {
	vars := map[string]string{
		"BALENA_MACHINE_NAME": r.machine.Slug,
		"RESIN_MACHINE_NAME":  r.machine.Slug,
		"BALENA_ARCH":         r.machine.Arch,
		"RESIN_ARCH":          r.machine.Arch,
		"BALENA_SERVICE_NAME": service,
		"BALENA_APP_NAME":     r.app,
		"BALENA_RELEASE_HASH": r.hash,
	}
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, "#") {
			continue
		}
		lines[i] = expand(line, vars, func(v string) {
			r.log(fmt.Sprintf("service %s: %s line %d: %%%%%s%%%% is not a build variable; left as written", service, name, i+1, v))
		})
	}
	return []byte(strings.Join(lines, "\n"))
}

// expand replaces each %%NAME%% of line (NAME an upper-case letter then upper-case letters and _, the
// leftmost match first) found in vars, calling unknown with the others.
func expand(line string, vars map[string]string, unknown func(string)) string {
	var b strings.Builder
	for {
		i := strings.Index(line, "%%")
		if i < 0 {
			b.WriteString(line)
			return b.String()
		}
		j := i + 2
		for j < len(line) && (line[j] >= 'A' && line[j] <= 'Z' || line[j] == '_' && j > i+2) {
			j++
		}
		if j-(i+2) < 2 || !strings.HasPrefix(line[j:], "%%") {
			b.WriteString(line[:i+1]) // not a variable: move on by one character
			line = line[i+1:]
			continue
		}
		name := line[i+2 : j]
		b.WriteString(line[:i])
		if v, ok := vars[name]; ok {
			b.WriteString(v)
		} else {
			unknown(name)
			b.WriteString(line[i : j+2])
		}
		line = line[j+2:]
	}
}

// nodeDockerfile is the Dockerfile balena's builder makes for a folder with a package.json and no
// Dockerfile: the balenalib Node.js image of the device type, npm install, then npm start when package.json
// has a start script, else node server.js.
func (r *renderer) nodeDockerfile(service, src string) ([]byte, error) {
	p := filepath.Join(src, "package.json")
	if err := r.inside(p); err != nil {
		return nil, fmt.Errorf("service %s: %w", service, err)
	}
	data, err := disk.ReadInput(p, "service "+service+": package.json", MaxDockerfileBytes)
	if err != nil {
		return nil, err
	}
	var pkg struct {
		Scripts map[string]any `json:"scripts"`
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		return nil, fmt.Errorf("service %s: package.json: %w", service, err)
	}
	cmd := `["node", "server.js"]`
	if s, ok := pkg.Scripts["start"].(string); ok && strings.TrimSpace(s) != "" {
		cmd = `["npm", "start"]`
	}
	return fmt.Appendf(nil, `FROM balenalib/%s-node
WORKDIR /usr/src/app
COPY package.json ./
RUN npm install
COPY . ./
CMD %s
`, r.machine.Slug, cmd), nil
}

// copyContext copies the build context src into dst: without .git and what src's .dockerignore excludes
// (.dockerignore itself is kept), symlinks as links, refused when they point outside the project.
func (r *renderer) copyContext(service, src, dst string) error {
	var ignore []ignorePattern
	if p := filepath.Join(src, ".dockerignore"); regular(p) {
		if err := r.inside(p); err != nil {
			return fmt.Errorf("service %s: %w", service, err)
		}
		data, err := disk.ReadInput(p, "service "+service+": .dockerignore", MaxDockerfileBytes)
		if err != nil {
			return err
		}
		ignore = parseDockerignore(data)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("service %s: %w", service, err)
		}
		if err := r.ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		slashed := filepath.ToSlash(rel)
		out := filepath.Join(dst, rel)
		if rel != "." {
			if d.Name() == ".git" && d.IsDir() {
				return filepath.SkipDir
			}
			if slashed != ".dockerignore" && ignored(ignore, slashed) {
				if d.IsDir() && !hasExceptions(ignore) {
					return filepath.SkipDir
				}
				return nil
			}
		}
		if !d.IsDir() { // the folder may be excluded and this file an exception
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
		}
		switch t := d.Type(); {
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("service %s: %w", service, err)
			}
			abs := target
			if !filepath.IsAbs(abs) {
				abs = filepath.Join(filepath.Dir(p), target)
			}
			if !within(r.project, filepath.Clean(abs)) {
				return fmt.Errorf("service %s: symlink %s points outside the project (%s)", service, slashed, target)
			}
			return os.Symlink(target, out)
		case t.IsRegular():
			return copyFile(p, out)
		default:
			r.log(fmt.Sprintf("service %s: %s is not a file, folder or symlink; not copied", service, slashed))
			return nil
		}
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm()|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// inside refuses a path whose symlinks lead out of the project.
func (r *renderer) inside(p string) error {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return err
	}
	if !within(r.project, real) {
		return fmt.Errorf("%s leads outside the project (to %s)", p, real)
	}
	return nil
}

// within reports whether p is dir or below it; both are absolute and clean.
func within(dir, p string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}

// resolveMissing resolves the symlinks of the longest existing prefix of p, an absolute path.
func resolveMissing(p string) (string, error) {
	p = filepath.Clean(p)
	var rest []string
	for {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(append([]string{real}, rest...)...), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", err
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

// makeEmptyDir creates dir, or accepts it when it is an empty folder; created reports which.
func makeEmptyDir(dir string) (created bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, fmt.Errorf("output folder: %w", err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("output folder: %w", err)
	case len(entries) > 0:
		return false, fmt.Errorf("output folder %s is not empty", dir)
	}
	return false, nil
}

// mapValue returns the value of key in a YAML mapping node, nil when absent or n is not a mapping.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// absolutePaths rewrites the files a compose file names (env_file, label_file, extends.file, include) as
// absolute paths in the project, so that the resolved file, in another folder, still finds them.
func absolutePaths(doc *yaml.Node, project string) {
	abs := func(n *yaml.Node) {
		if n != nil && n.Kind == yaml.ScalarNode && n.Value != "" && !filepath.IsAbs(n.Value) {
			n.Value = filepath.Join(project, n.Value)
		}
	}
	// files handles a reference written as a path, a list of paths, or a list of {path: ...}.
	var files func(n *yaml.Node)
	files = func(n *yaml.Node) {
		if n == nil {
			return
		}
		if n.Kind == yaml.ScalarNode {
			abs(n)
			return
		}
		if n.Kind != yaml.SequenceNode {
			return
		}
		for _, item := range n.Content {
			abs(item)
			if p := mapValue(item, "path"); p != nil {
				files(p)
			}
		}
	}
	if len(doc.Content) == 0 {
		return
	}
	root := doc.Content[0]
	files(mapValue(root, "include"))
	services := mapValue(root, "services")
	if services == nil || services.Kind != yaml.MappingNode {
		return
	}
	for i := 1; i < len(services.Content); i += 2 {
		svc := services.Content[i]
		files(mapValue(svc, "env_file"))
		files(mapValue(svc, "label_file"))
		abs(mapValue(mapValue(svc, "extends"), "file"))
	}
}

// setBuild points a service's build: at the rendered context and Dockerfile, keeping the other build
// fields the file gives (args, target, ...).
func setBuild(svc *yaml.Node, context, dockerfile string) {
	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	b := mapValue(svc, "build")
	switch {
	case b == nil:
		b = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		svc.Content = append(svc.Content, str("build"), b)
	case b.Kind != yaml.MappingNode: // build: ./folder, or an alias
		*b = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	for _, kv := range [][2]string{{"context", context}, {"dockerfile", dockerfile}} {
		if v := mapValue(b, kv[0]); v != nil {
			*v = *str(kv[1])
		} else {
			b.Content = append(b.Content, str(kv[0]), str(kv[1]))
		}
	}
}
