package compose

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
)

// This file loads a compose file the way compose-go's loader does, for what balena accepts, without its
// JSON schema (whose package compiles meta-schemas at every start of the program): interpolation,
// include, extends, env_file and label_file, the Compose consistency rules, and the canonical long
// syntax of every field (canon.go), as compose-go's model marshals to JSON.

// maxIncludeDepth bounds nested include: and extends.file: chains.
const maxIncludeDepth = 16

// maxFiles bounds the files include: and extends.file: read for one compose file, all levels counted.
const maxFiles = 64

// interpolate substitutes the variables of every string of top, warning once about each unset one.
func (p *parser) interpolate(top map[string]any) (map[string]any, error) {
	env := p.env()
	var unset []string
	defer func() {
		sort.Strings(unset)
		for _, name := range unset {
			p.warnf("", "variable %s is not set; it reads as an empty string", name)
		}
	}()
	lookup := func(key string) (string, bool) {
		v, ok := env[key]
		return v, ok
	}
	out, err := interpolateTree(top, func(s string) (string, error) {
		for _, name := range plainVariables(s) {
			if _, ok := env[name]; !ok && !p.unset[name] {
				p.unset[name] = true
				unset = append(unset, name)
			}
		}
		return substitute(s, lookup)
	})
	if err != nil {
		return nil, p.loaderError(err)
	}
	return out, nil
}

func (p *parser) env() map[string]string {
	if p.opts.env == nil {
		return map[string]string{}
	}
	return p.opts.env
}

// model loads the interpolated top-level mapping into the canonical model project() reads.
func (p *parser) model(top map[string]any) (map[string]any, error) {
	if err := p.include(top); err != nil {
		return nil, err
	}
	services, ok := top["services"].(map[string]any)
	if !ok {
		return nil, p.errorf("services", "services: not a mapping")
	}
	if err := p.extendAll(services); err != nil {
		return nil, err
	}
	for _, section := range []string{"volumes", "networks"} {
		if v, ok := top[section]; ok && v != nil {
			if _, ok := v.(map[string]any); !ok {
				return nil, p.errorf(section, "%s: not a mapping", section)
			}
		}
	}
	model := map[string]any{}
	volumes := map[string]any{}
	for _, name := range sortedKeys(asMap(top["volumes"])) {
		v, err := p.canonVolume(name, asMap(top["volumes"])[name])
		if err != nil {
			return nil, err
		}
		volumes[name] = v
	}
	networks := map[string]any{}
	for _, name := range sortedKeys(asMap(top["networks"])) {
		n, err := p.canonNetwork(name, asMap(top["networks"])[name])
		if err != nil {
			return nil, err
		}
		networks[name] = n
	}
	canon := map[string]any{}
	for _, name := range sortedKeys(services) {
		s, err := p.canonService(name, services[name])
		if err != nil {
			return nil, err
		}
		canon[name] = s
	}
	if err := p.consistent(canon, volumes, networks); err != nil {
		return nil, err
	}
	model["services"] = canon
	model["volumes"] = volumes
	model["networks"] = networks
	return jsonModel(model)
}

// include merges the services, volumes and networks of the files top includes (relative to the
// directory given with WithDir); a name defined twice is an error.
func (p *parser) include(top map[string]any) error {
	inc, ok := top["include"]
	delete(top, "include")
	if !ok || inc == nil {
		return nil
	}
	entries, ok := inc.([]any)
	if !ok {
		return p.errorf("include", "include: not a list")
	}
	if p.depth >= maxIncludeDepth {
		return p.errorf("include", "include: nested more than %d files deep", maxIncludeDepth)
	}
	for i, e := range entries {
		at := "include." + fmt.Sprint(i)
		var files []string
		switch e := e.(type) {
		case string:
			files = []string{e}
		case map[string]any:
			for _, k := range sortedKeys(e) {
				if k != "path" {
					return p.errorf(at+"."+k, "include: %s is not supported by balena", k)
				}
			}
			switch v := e["path"].(type) {
			case string:
				files = []string{v}
			case []any:
				for _, f := range v {
					s, ok := f.(string)
					if !ok {
						return p.errorf(at+".path", "include: path: not a string")
					}
					files = append(files, s)
				}
			default:
				return p.errorf(at, "include: an entry needs a path")
			}
		default:
			return p.errorf(at, "include: an entry is a path or a mapping with path")
		}
		if len(files) != 1 {
			return p.errorf(at, "include: one file per entry is supported by balena")
		}
		file := p.resolve(files[0])
		sub, err := p.loadFile(file)
		if err != nil {
			return err
		}
		for _, section := range []string{"services", "volumes", "networks"} {
			m, _ := sub[section].(map[string]any)
			if len(m) == 0 {
				continue
			}
			dst, _ := top[section].(map[string]any)
			if dst == nil {
				dst = map[string]any{}
				top[section] = dst
			}
			for _, name := range sortedKeys(m) {
				mine, dup := dst[name]
				if !dup {
					dst[name] = m[name]
					continue
				}
				// Defined here too: this file's definition merges over the included one.
				if reflect.DeepEqual(mine, m[name]) || mine == nil {
					dst[name] = m[name]
					continue
				}
				a, ok1 := m[name].(map[string]any)
				b, ok2 := mine.(map[string]any)
				if !ok1 || !ok2 {
					continue
				}
				merged, err := mergeService(deepCopy(a).(map[string]any), b)
				if err != nil {
					return p.errorf(at, "include %s: %s %s: %v", files[0], strings.TrimSuffix(section, "s"), name, err)
				}
				dst[name] = merged
			}
		}
	}
	return nil
}

// loadFile reads another compose file named by include or extends: parsed, checked and interpolated
// like the main file, its own includes and relative paths resolved against its own directory.
func (p *parser) loadFile(file string) (map[string]any, error) {
	if *p.files++; *p.files > maxFiles {
		return nil, fmt.Errorf("%s: include and extends read more than %d files", p.opts.name, maxFiles)
	}
	data, err := readLimited(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.opts.name, err)
	}
	sub := &parser{opts: p.opts, lines: map[string]int{}, unset: p.unset, depth: p.depth + 1, files: p.files}
	sub.opts.name = file
	sub.opts.dir = filepath.Dir(file)
	top, err := sub.read(data)
	if err != nil {
		return nil, err
	}
	if err := sub.precheck(); err != nil {
		return nil, err
	}
	top, err = sub.interpolate(top)
	if err != nil {
		return nil, err
	}
	if err := sub.include(top); err != nil {
		return nil, err
	}
	if services, ok := top["services"].(map[string]any); ok {
		if err := sub.extendAll(services); err != nil {
			return nil, err
		}
		for _, name := range sortedKeys(services) {
			// Checked here, so that a mistake names this file and its line.
			if _, err := sub.canonService(name, deepCopy(services[name])); err != nil {
				return nil, err
			}
			if svc, ok := services[name].(map[string]any); ok {
				sub.absolutePaths(svc)
			}
		}
	}
	p.warnings = append(p.warnings, sub.warnings...)
	return top, nil
}

func readLimited(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(ioLimit(f, MaxSize+1)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// resolve names a file relative to the compose file's directory.
func (p *parser) resolve(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(p.opts.dir, name)
}

// absolutePaths rewrites a service's relative build context, env_file and label_file paths against the
// directory of the file that defines it, as compose does for a service read from another file.
func (p *parser) absolutePaths(svc map[string]any) {
	if p.opts.dir == "" {
		return
	}
	switch b := svc["build"].(type) {
	case string:
		svc["build"] = p.contextPath(b)
	case map[string]any:
		if c, ok := b["context"].(string); ok {
			b["context"] = p.contextPath(c)
		}
	}
	for _, k := range []string{"env_file", "label_file"} {
		switch v := svc[k].(type) {
		case string:
			svc[k] = p.resolve(v)
		case []any:
			for i, e := range v {
				switch e := e.(type) {
				case string:
					v[i] = p.resolve(e)
				case map[string]any:
					if s, ok := e["path"].(string); ok {
						e["path"] = p.resolve(s)
					}
				}
			}
		}
	}
	if e, ok := svc["extends"].(map[string]any); ok {
		if f, ok := e["file"].(string); ok {
			e["file"] = p.resolve(f)
		}
	}
}

// contextPath resolves a build context that is a local path; a URL (scheme://, git@) stays.
func (p *parser) contextPath(c string) string {
	if strings.Contains(c, "://") || strings.HasPrefix(c, "git@") || strings.HasPrefix(c, "github.com/") {
		return c
	}
	return p.resolve(c)
}

// extendAll applies extends: to every service, detecting cycles.
func (p *parser) extendAll(services map[string]any) error {
	for _, name := range sortedKeys(services) {
		if _, err := p.extend(name, services, nil); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) extend(name string, services map[string]any, chain []string) (map[string]any, error) {
	at := "services." + name
	raw := services[name]
	if raw == nil {
		return nil, nil
	}
	svc, ok := raw.(map[string]any)
	if !ok {
		return nil, p.errorf(at, "service %s: not a mapping", name)
	}
	ext, ok := svc["extends"]
	if !ok {
		return svc, nil
	}
	for _, c := range chain {
		if c == p.opts.name+":"+name {
			return nil, p.errorf(at+".extends", "service %s: extends: a cycle (%s)", name, strings.Join(append(chain, c), " → "))
		}
	}
	chain = append(chain, p.opts.name+":"+name)
	if len(chain) > maxIncludeDepth {
		return nil, p.errorf(at+".extends", "service %s: extends: more than %d services deep", name, maxIncludeDepth)
	}
	var ref, file string
	switch e := ext.(type) {
	case string:
		ref = e
	case map[string]any:
		for _, k := range sortedKeys(e) {
			if k != "service" && k != "file" {
				return nil, p.errorf(at+".extends."+k, "service %s: extends: %s is not a field of extends", name, k)
			}
		}
		r, ok := e["service"].(string)
		if !ok {
			return nil, p.errorf(at+".extends", "service %s: extends: service is required", name)
		}
		ref = r
		if f, ok := e["file"]; ok {
			s, ok := f.(string)
			if !ok {
				return nil, p.errorf(at+".extends.file", "service %s: extends.file: not a string", name)
			}
			file = s
		}
	default:
		return nil, p.errorf(at+".extends", "service %s: extends: a service name or a mapping with service and file", name)
	}
	var base map[string]any
	if file != "" {
		if p.opts.dir == "" {
			return nil, p.errorf(at+".extends.file", "service %s: extends.file: reads other files; pass the compose file's directory to allow it", name)
		}
		if p.depth >= maxIncludeDepth {
			return nil, p.errorf(at+".extends.file", "service %s: extends.file: nested more than %d files deep", name, maxIncludeDepth)
		}
		other, err := p.loadFile(p.resolve(file))
		if err != nil {
			return nil, err
		}
		otherServices, _ := other["services"].(map[string]any)
		b, ok := otherServices[ref].(map[string]any)
		if !ok {
			return nil, p.errorf(at+".extends", "service %s: extends: no service %s in %s", name, ref, file)
		}
		base = b
	} else {
		if _, ok := services[ref]; !ok {
			return nil, p.errorf(at+".extends", "service %s: extends: no service %s in %s", name, ref, p.opts.name)
		}
		b, err := p.extend(ref, services, chain)
		if err != nil {
			return nil, err
		}
		if b == nil {
			delete(svc, "extends")
			return svc, nil
		}
		base = b
	}
	merged, err := mergeService(deepCopy(base).(map[string]any), svc)
	if err != nil {
		return nil, p.errorf(at+".extends", "service %s: extends %s: %v", name, ref, err)
	}
	delete(merged, "extends")
	services[name] = merged
	return merged, nil
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(v))
		for k, e := range v {
			c[k] = deepCopy(e)
		}
		return c
	case []any:
		c := make([]any, len(v))
		for i, e := range v {
			c[i] = deepCopy(e)
		}
		return c
	}
	return v
}

// envFiles reads a service's env_file entries (canonical: path, required, format) into a mapping,
// resolving ${VAR} in them from the environment and from what the service's environment sets.
func (p *parser) envFiles(name string, files []any, environment map[string]any) (map[string]string, error) {
	at := "services." + name + ".env_file"
	vars := map[string]string{}
	env := p.env()
	for _, f := range files {
		m := asMap(f)
		file := p.resolve(str(m["path"]))
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
			if m["required"] == false {
				continue
			}
			return nil, p.errorf(at, "service %s: env_file %s: not found", name, str(m["path"]))
		}
		data, err := readLimited(file)
		if err != nil {
			return nil, p.errorf(at, "service %s: env_file %s: %v", name, str(m["path"]), err)
		}
		err = parseEnvFile(data, file, vars, func(k string) (string, bool) {
			if v, ok := env[k]; ok {
				return v, true
			}
			if v, ok := environment[k]; ok && v != nil {
				return str(v), true
			}
			return "", false
		}, str(m["format"]))
		if err != nil {
			return nil, p.errorf(at, "service %s: env_file %s: %s", name, str(m["path"]), oneLine(err.Error()))
		}
	}
	return vars, nil
}

// labelFiles reads a service's label_file entries into a mapping.
func (p *parser) labelFiles(name string, files []string) (map[string]string, error) {
	at := "services." + name + ".label_file"
	labels := map[string]string{}
	for _, f := range files {
		file := p.resolve(f)
		data, err := readLimited(file)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, p.errorf(at, "service %s: label_file %s: not found", name, f)
			}
			return nil, p.errorf(at, "service %s: label_file %s: %v", name, f, err)
		}
		vars := map[string]string{}
		err = parseEnvFile(data, file, vars, func(k string) (string, bool) {
			v, ok := labels[k]
			return v, ok
		}, "")
		if err != nil {
			return nil, p.errorf(at, "service %s: label_file %s: %s", name, f, oneLine(err.Error()))
		}
		for k, v := range vars {
			labels[k] = v
		}
	}
	return labels, nil
}

// consistent applies Compose's rules between services, volumes and networks.
func (p *parser) consistent(services, volumes, networks map[string]any) error {
	for _, name := range sortedKeys(services) {
		s := asMap(services[name])
		at := "services." + name
		mode := str(s["network_mode"])
		nets := asMap(s["networks"])
		if mode != "" && len(nets) > 0 {
			return p.errorf(at+".networks", "service %s declares mutually exclusive network_mode and networks", name)
		}
		for _, n := range sortedKeys(nets) {
			if _, ok := networks[n]; !ok && n != "default" {
				return p.errorf(at+".networks."+n, "service %s refers to undefined network %s", name, n)
			}
		}
		if hc := asMap(s["healthcheck"]); hc != nil {
			if test := list(hc["test"]); len(test) > 0 {
				switch str(test[0]) {
				case "CMD", "CMD-SHELL", "NONE":
				default:
					return p.errorf(at+".healthcheck.test", `service %s: healthcheck.test must start with "CMD", "CMD-SHELL" or "NONE"`, name)
				}
			}
		}
		for _, d := range sortedKeys(asMap(s["depends_on"])) {
			if _, ok := services[d]; !ok {
				return p.errorf(at+".depends_on."+d, "service %s depends on undefined service %s", name, d)
			}
		}
		if ref, ok := strings.CutPrefix(mode, "service:"); ok {
			if _, ok := services[ref]; !ok {
				return p.errorf(at+".network_mode", "service %s: network_mode service:%s: no such service", name, ref)
			}
		}
		for i, v := range list(s["volumes"]) {
			vm := asMap(v)
			if str(vm["type"]) == "volume" && str(vm["source"]) != "" {
				if _, ok := volumes[str(vm["source"])]; !ok {
					return p.errorf(fmt.Sprintf("%s.volumes.%d", at, i), "service %s refers to undefined volume %s", name, str(vm["source"]))
				}
			}
		}
	}
	return nil
}

// cleanTarget is a mount target as compose writes it.
func cleanTarget(t string) string {
	if t == "" {
		return ""
	}
	return path.Clean(t)
}

func ioLimit(r io.Reader, n int64) io.Reader { return io.LimitReader(r, n) }
