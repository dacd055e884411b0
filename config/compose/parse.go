// Package compose reads balena's subset of the Compose file format into the services, named volumes and
// networks of a release, refusing or warning about what a balena device would not run.
package compose

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v4"
)

// MaxSize is the largest compose file Parse reads.
const MaxSize = 1 << 20

// maxNodes bounds the YAML nodes of a compose file, aliases counted where they are used.
const maxNodes = 200000

// maxDepth bounds the nesting of a compose file's YAML.
const maxDepth = 100

// Option changes how Parse reads a compose file.
type Option func(*options)

type options struct {
	name       string
	env        map[string]string
	dir        string
	allowBuild bool
}

// WithFilename names the compose file in messages (default "docker-compose.yml").
func WithFilename(name string) Option {
	return func(o *options) { o.name = name }
}

// WithEnv sets the variables ${VAR} interpolation reads. Without it every variable is unset; the process
// environment is never read.
func WithEnv(env map[string]string) Option {
	return func(o *options) { o.env = env }
}

// WithDir lets the compose file name other files (env_file, label_file, extends.file, include), read
// relative to dir. Without it such a reference is an error and Parse reads no file.
func WithDir(dir string) Option {
	return func(o *options) { o.dir = dir }
}

// AllowBuild accepts services with build: and no image: (their Image is empty), for a caller that builds
// them. Without it such a service is an error: a preload needs every image.
func AllowBuild() Option {
	return func(o *options) { o.allowBuild = true }
}

// Parse reads a compose file. It returns the project, warnings for what balena ignores or drops (one line
// each, for the caller to print), or a one-line error naming the file, line, service and field.
func Parse(data []byte, opts ...Option) (*Project, []string, error) {
	o := options{name: "docker-compose.yml"}
	for _, opt := range opts {
		opt(&o)
	}
	p := &parser{opts: o, lines: map[string]int{}, unset: map[string]bool{}, files: new(int)}
	proj, err := p.parse(data)
	if err != nil {
		return nil, nil, err
	}
	return proj, p.warnings, nil
}

type parser struct {
	opts     options
	lines    map[string]int // dotted path → line of its key
	raw      map[string]any
	warnings []string
	unset    map[string]bool // variables already warned about
	depth    int             // files included or extended from, for a file read by include or extends
	files    *int            // files read by include and extends so far, all levels counted
}

// errorf returns an error for path (dotted, e.g. "services.web.ports"), with the line of the longest prefix
// of path that the file spells out.
func (p *parser) errorf(path, format string, args ...any) error {
	return errors.New(p.where(path) + fmt.Sprintf(format, args...))
}

func (p *parser) warnf(path, format string, args ...any) {
	p.warnings = append(p.warnings, p.where(path)+fmt.Sprintf(format, args...))
}

func (p *parser) where(path string) string {
	if line := p.line(path); line > 0 {
		return fmt.Sprintf("%s:%d: ", p.opts.name, line)
	}
	return p.opts.name + ": "
}

func (p *parser) line(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

func (p *parser) parse(data []byte) (*Project, error) {
	top, err := p.read(data)
	if err != nil {
		return nil, err
	}
	if err := p.precheck(); err != nil {
		return nil, err
	}
	delete(top, "version")
	delete(top, "name")
	top, err = p.interpolate(top)
	if err != nil {
		return nil, err
	}
	model, err := p.model(top)
	if err != nil {
		return nil, err
	}
	return p.project(model)
}

// read decodes one YAML document, bounded in size, nodes and depth, indexing the line of every key.
func (p *parser) read(data []byte) (map[string]any, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d a compose file may have", p.opts.name, len(data), MaxSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty compose file", p.opts.name)
		}
		return nil, fmt.Errorf("%s: %s", p.opts.name, oneLine(err.Error()))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("%s: %s", p.opts.name, oneLine(err.Error()))
		}
		return nil, fmt.Errorf("%s:%d: a second YAML document; a compose file has one", p.opts.name, extra.Line)
	}
	if n, deep := countNodes(&doc, maxNodes+1); deep {
		return nil, fmt.Errorf("%s: YAML nested more than %d levels deep", p.opts.name, maxDepth)
	} else if n > maxNodes {
		return nil, fmt.Errorf("%s: more than %d YAML nodes (aliases expanded)", p.opts.name, maxNodes)
	}
	p.index(&doc, "")
	var raw any
	if err := doc.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: %s", p.opts.name, oneLine(err.Error()))
	}
	top, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: the top level is not a mapping", p.opts.name)
	}
	p.raw = top
	return top, nil
}

// plainVariables returns the names of the variables s substitutes without a default, an alternative or an
// error message ($NAME, ${NAME}); $$ is a literal dollar.
func plainVariables(s string) []string {
	var names []string
	isName := func(c byte, first bool) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			continue
		}
		switch {
		case s[i+1] == '$':
			i++
		case s[i+1] == '{':
			j := i + 2
			for j < len(s) && isName(s[j], j == i+2) {
				j++
			}
			if j > i+2 && j < len(s) && s[j] == '}' {
				names = append(names, s[i+2:j])
			}
			i = j - 1
		case isName(s[i+1], true):
			j := i + 1
			for j < len(s) && isName(s[j], j == i+1) {
				j++
			}
			names = append(names, s[i+1:j])
			i = j - 1
		}
	}
	return names
}

// countNodes counts the nodes of n with aliases expanded, stopping at limit or below maxDepth levels.
func countNodes(n *yaml.Node, limit int) (count int, deep bool) {
	var walk func(*yaml.Node, int)
	walk = func(n *yaml.Node, depth int) {
		if count >= limit || deep || n == nil {
			return
		}
		count++
		if depth > maxDepth {
			deep = true
			return
		}
		if n.Kind == yaml.AliasNode {
			walk(n.Alias, depth+1)
			return
		}
		for _, c := range n.Content {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return count, deep
}

// index records the line of every mapping key and sequence item under prefix.
func (p *parser) index(n *yaml.Node, prefix string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			p.index(c, prefix)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			path := join(prefix, k.Value)
			if _, ok := p.lines[path]; !ok {
				p.lines[path] = k.Line
			}
			p.index(n.Content[i+1], path)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			path := join(prefix, strconv.Itoa(i))
			p.lines[path] = c.Line
			p.index(c, path)
		}
	}
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// precheck refuses, before compose-go sees them, what would make it read files or log.
func (p *parser) precheck() error {
	for _, k := range sortedKeys(p.raw) {
		switch {
		case k == "version" || k == "name" || k == "services" || k == "volumes" || k == "networks" || strings.HasPrefix(k, "x-"):
		case k == "include":
			if p.opts.dir == "" {
				return p.errorf(k, "include: reads other files; pass the compose file's directory to allow it")
			}
		case k == "secrets" || k == "configs":
			return p.errorf(k, "%s: top-level secrets and configs are not supported by balena", k)
		default:
			return p.errorf(k, "%s: not supported by balena", k)
		}
	}
	if v, ok := p.raw["version"]; ok {
		s := fmt.Sprint(v)
		if strings.HasPrefix(s, "3") {
			p.warnf("version", "version %q: balena implements compose 2.1; the version is ignored", s)
		}
	}
	for _, section := range []string{"volumes", "networks"} {
		m, _ := p.raw[section].(map[string]any)
		for _, name := range sortedKeys(m) {
			def, _ := m[name].(map[string]any)
			if _, ok := def["external"]; ok {
				return p.errorf(section+"."+name+".external", "%s %s: external is not supported by balena", strings.TrimSuffix(section, "s"), name)
			}
		}
	}
	services, _ := p.raw["services"].(map[string]any)
	if len(services) == 0 && p.depth == 0 {
		return p.errorf("services", "no services")
	}
	for _, name := range sortedKeys(services) {
		svc, _ := services[name].(map[string]any)
		for _, f := range []string{"env_file", "label_file"} {
			if _, ok := svc[f]; ok && p.opts.dir == "" {
				return p.errorf("services."+name+"."+f, "service %s: %s: reads other files; pass the compose file's directory to allow it", name, f)
			}
		}
		if n := portCount(svc["ports"]); n > maxPorts {
			return p.errorf("services."+name+".ports", "service %s: ports: %d ports, more than the %d a service may publish", name, n, maxPorts)
		}
		if ext, ok := svc["extends"].(map[string]any); ok {
			if _, ok := ext["file"]; ok && p.opts.dir == "" {
				return p.errorf("services."+name+".extends.file", "service %s: extends.file: reads other files; pass the compose file's directory to allow it", name)
			}
		}
	}
	return nil
}

// maxPorts bounds the ports of a service, ranges expanded (compose-go expands them one by one).
const maxPorts = 1024

var portRangeRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(\d+)-(\d+)`) })

// portCount counts the ports a service's raw ports: entry publishes, ranges expanded.
func portCount(ports any) int {
	entries, _ := ports.([]any)
	total := 0
	for _, e := range entries {
		var spec string
		switch e := e.(type) {
		case map[string]any:
			spec = fmt.Sprint(e["published"]) + ":" + fmt.Sprint(e["target"])
		default:
			spec = fmt.Sprint(e)
		}
		n := 1
		for _, m := range portRangeRE().FindAllStringSubmatch(spec, -1) {
			lo, err1 := strconv.Atoi(m[1])
			hi, err2 := strconv.Atoi(m[2])
			if err1 != nil || err2 != nil {
				return maxPorts + 1
			}
			if hi-lo+1 > n {
				n = hi - lo + 1
			}
		}
		total += n
		if total > maxPorts {
			break
		}
	}
	return total
}

var modelPath = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?:services|volumes|networks)(?:\.[A-Za-z0-9_.\-\[\]]+)?`)
})

// loaderError turns compose-go's error into one line, with the line of the path it names when the file
// spells it out.
func (p *parser) loaderError(err error) error {
	msg := oneLine(err.Error())
	msg = strings.TrimPrefix(msg, "validating "+p.opts.name+": ")
	if m := modelPath().FindString(msg); m != "" {
		path := strings.NewReplacer("[", ".", "]", "").Replace(m)
		if line := p.line(path); line > 0 {
			return fmt.Errorf("%s:%d: %s", p.opts.name, line, msg)
		}
	}
	return fmt.Errorf("%s: %s", p.opts.name, msg)
}

// oneLine joins the lines of a multi-line message.
func oneLine(s string) string {
	fields := strings.Split(strings.TrimSpace(s), "\n")
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}
	return strings.Join(fields, "; ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
