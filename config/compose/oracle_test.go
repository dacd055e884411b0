package compose

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
)

// parseWithLoader is what Parse did before it loaded compose files itself: compose-go's loader, its
// project marshalled to JSON. The tests compare Parse with it.
func parseWithLoader(data []byte, opts ...Option) (*Project, []string, error) {
	o := options{name: "docker-compose.yml"}
	for _, opt := range opts {
		opt(&o)
	}
	p := &parser{opts: o, lines: map[string]int{}, unset: map[string]bool{}, files: new(int)}
	top, err := p.read(data)
	if err != nil {
		return nil, nil, err
	}
	if err := p.precheck(); err != nil {
		return nil, nil, err
	}
	delete(top, "version")
	delete(top, "name")
	env := p.env()
	unset := map[string]bool{}
	details := types.ConfigDetails{
		WorkingDir:  p.opts.dir,
		ConfigFiles: []types.ConfigFile{{Filename: p.opts.name, Config: top}},
		Environment: env,
	}
	project, err := loader.LoadWithContext(context.Background(), details, func(lo *loader.Options) {
		lo.SetProjectName("hostos", true)
		lo.ResolvePaths = p.opts.dir != ""
		lo.Profiles = []string{"*"}
		lo.Interpolate.Substitute = func(s string, m template.Mapping) (string, error) {
			for _, name := range plainVariables(s) {
				if _, ok := env[name]; !ok && !unset[name] {
					unset[name] = true
					p.warnf("", "variable %s is not set; it reads as an empty string", name)
				}
			}
			return template.SubstituteWithOptions(s, m, template.WithoutLogging)
		}
		lo.Interpolate.LookupValue = func(key string) (string, bool) {
			v, ok := env[key]
			return v, ok
		}
		for path, cast := range lo.Interpolate.TypeCastMapping {
			lo.Interpolate.TypeCastMapping[path] = quietBool(cast)
		}
	})
	if err != nil {
		return nil, nil, p.loaderError(err)
	}
	js, err := json.Marshal(project)
	if err != nil {
		return nil, nil, err
	}
	var model map[string]any
	if err := json.Unmarshal(js, &model); err != nil {
		return nil, nil, err
	}
	proj, err := p.project(model)
	if err != nil {
		return nil, nil, err
	}
	return proj, p.warnings, nil
}

func quietBool(cast func(string) (any, error)) func(string) (any, error) {
	if v, err := cast("true"); err != nil || v != true {
		return cast
	}
	return func(s string) (any, error) {
		switch strings.ToLower(s) {
		case "y", "yes", "on":
			return true, nil
		case "n", "no", "off":
			return false, nil
		}
		return cast(s)
	}
}
