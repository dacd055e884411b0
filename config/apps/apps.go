// Package apps encodes, decodes and validates apps.json, the target state (v3) the balena supervisor
// loads from the data partition of a preloaded device.
package apps

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
)

// MaxSize is the largest apps.json Decode reads.
const MaxSize = 16 << 20

// File is apps.json: {config, apps, pinDevice}. Keys not listed here are dropped by Decode.
type File struct {
	// Config holds device configuration variables (BALENA_HOST_CONFIG_*, BALENA_SUPERVISOR_*, ...).
	Config map[string]string `json:"config"`
	// Apps are keyed by app uuid.
	Apps map[string]App `json:"apps"`
	// PinDevice pins the device to the release of the fleet app.
	PinDevice bool `json:"pinDevice"`
}

// App is one app of the target state.
type App struct {
	ID        ID                    `json:"id"`
	Name      string                `json:"name"`
	Class     string                `json:"class"` // fleet, app or block; Decode turns an absent class into fleet
	ParentApp string                `json:"parent_app,omitempty"`
	IsHost    *bool                 `json:"is_host,omitempty"`
	Releases  map[string]AppRelease `json:"releases"` // keyed by release uuid (the commit); exactly one for a preload
}

// AppRelease is one release of an app in apps.json: its services, named volumes and networks.
type AppRelease struct {
	ID       ID                        `json:"id"`
	Services map[string]Service        `json:"services"`
	Volumes  map[string]map[string]any `json:"volumes"`  // compose volume configurations by name
	Networks map[string]map[string]any `json:"networks"` // compose network configurations by name
}

// Service is one service of a release.
type Service struct {
	ID          ID                `json:"id"`
	ImageID     ID                `json:"image_id"`
	Image       string            `json:"image"` // as the engine knows it: a tag or repository@sha256:digest
	Environment map[string]string `json:"environment"`
	Labels      map[string]string `json:"labels"`
	Running     *bool             `json:"running,omitempty"` // nil: running
	Contract    map[string]any    `json:"contract,omitempty"`
	// Composition is the compose configuration of the service (snake_case keys), which the supervisor
	// turns into the container's configuration.
	Composition map[string]any `json:"composition,omitempty"`
}

// ID is a numeric identifier of the target state. Decode reads it from a JSON number or a decimal string,
// as the supervisor does; Encode writes a number.
type ID int64

// UnmarshalJSON reads an integral number or a string holding one.
func (id *ID) UnmarshalJSON(b []byte) error {
	var text string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &text); err != nil {
			return err
		}
		text = strings.TrimSpace(text)
	} else {
		text = string(b)
	}
	if text == "null" && b[0] != '"' {
		return errors.New("id is null, not an integer")
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsInf(f, 0) || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		shown := b
		if len(shown) > 40 {
			shown = shown[:40]
		}
		return fmt.Errorf("id %s is not an integer", strconv.Quote(string(shown)))
	}
	*id = ID(f)
	return nil
}

// Decode reads apps.json. It checks the JSON types and fills the supervisor's defaults (class fleet,
// empty config, apps, services, volumes and networks); Validate checks the rest.
func Decode(data []byte) (*File, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("apps.json: %d bytes, more than the %d it may have", len(data), MaxSize)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("apps.json: empty document")
	}
	if trimmed[0] == '[' {
		return nil, errors.New("apps.json: a legacy (v1) array of apps; only the v3 target state is supported")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("apps.json: %s", jsonError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("apps.json: unexpected data after the object at byte %d", dec.InputOffset())
	}
	if trimmed[0] != '{' {
		return nil, errors.New("apps.json: the top level is not an object")
	}
	if err := checkNulls(data); err != nil {
		return nil, err
	}
	f = f.withDefaults()
	return &f, nil
}

// checkNulls refuses a missing or null value where the supervisor requires one (Go would read it as a zero
// value): ids, app names, service images, environments and labels, and null config, environment and label
// values.
func checkNulls(data []byte) error {
	var doc struct {
		Config map[string]any `json:"config"`
		Apps   map[string]struct {
			ID       any `json:"id"`
			Name     any `json:"name"`
			Releases map[string]struct {
				ID       any `json:"id"`
				Services map[string]struct {
					ID          any            `json:"id"`
					ImageID     any            `json:"image_id"`
					Image       any            `json:"image"`
					Environment map[string]any `json:"environment"`
					Labels      map[string]any `json:"labels"`
				} `json:"services"`
			} `json:"releases"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("apps.json: %s", jsonError(err))
	}
	for _, k := range sorted(doc.Config) {
		if doc.Config[k] == nil {
			return fmt.Errorf("apps.json: config %q is null, not a string", k)
		}
	}
	for _, uuid := range sorted(doc.Apps) {
		a := doc.Apps[uuid]
		at := fmt.Sprintf("apps.json: apps[%q]", uuid)
		if a.ID == nil {
			return fmt.Errorf("%s.id is null or missing", at)
		}
		if a.Name == nil {
			return fmt.Errorf("%s.name is null or missing", at)
		}
		for _, commit := range sorted(a.Releases) {
			r := a.Releases[commit]
			if r.ID == nil {
				return fmt.Errorf("%s.releases[%q].id is null or missing", at, commit)
			}
			for _, name := range sorted(r.Services) {
				s := r.Services[name]
				sat := fmt.Sprintf("%s.releases[%q].services[%q]", at, commit, name)
				for _, f := range []struct {
					name  string
					value any
				}{{"id", s.ID}, {"image_id", s.ImageID}, {"image", s.Image}} {
					if f.value == nil {
						return fmt.Errorf("%s.%s is null or missing", sat, f.name)
					}
				}
				if s.Environment == nil {
					return fmt.Errorf("%s.environment is null or missing", sat)
				}
				if s.Labels == nil {
					return fmt.Errorf("%s.labels is null or missing", sat)
				}
				for _, k := range sorted(s.Environment) {
					if s.Environment[k] == nil {
						return fmt.Errorf("%s.environment[%q] is null, not a string", sat, k)
					}
				}
				for _, k := range sorted(s.Labels) {
					if s.Labels[k] == nil {
						return fmt.Errorf("%s.labels[%q] is null, not a string", sat, k)
					}
				}
			}
		}
	}
	return nil
}

func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("%s is a JSON %s, not %s", te.Field, te.Value, goKind(te.Type.String()))
		}
		return fmt.Sprintf("a JSON %s where %s belongs", te.Value, goKind(te.Type.String()))
	}
	return err.Error()
}

func goKind(t string) string {
	switch {
	case strings.HasPrefix(t, "map["):
		return "an object"
	case t == "string":
		return "a string"
	case t == "bool":
		return "a boolean"
	case strings.HasSuffix(t, "ID"):
		return "an integer"
	}
	return "an object"
}

// withDefaults returns f with what the supervisor's io-ts types default filled in (class fleet, empty
// config, apps, services, volumes, networks, environment and labels), leaving f unchanged.
func (f *File) withDefaults() File {
	c := File{Config: f.Config, Apps: make(map[string]App, len(f.Apps)), PinDevice: f.PinDevice}
	if c.Config == nil {
		c.Config = map[string]string{}
	}
	for k, a := range f.Apps {
		if a.Class == "" {
			a.Class = "fleet"
		}
		releases := make(map[string]AppRelease, len(a.Releases))
		for rk, r := range a.Releases {
			services := make(map[string]Service, len(r.Services))
			for sk, s := range r.Services {
				if s.Environment == nil {
					s.Environment = map[string]string{}
				}
				if s.Labels == nil {
					s.Labels = map[string]string{}
				}
				services[sk] = s
			}
			r.Services = services
			if r.Volumes == nil {
				r.Volumes = map[string]map[string]any{}
			}
			if r.Networks == nil {
				r.Networks = map[string]map[string]any{}
			}
			releases[rk] = r
		}
		a.Releases = releases
		c.Apps[k] = a
	}
	return c
}

// Encode writes apps.json as balena-preload does (Python's json.dump(indent=4, sort_keys=True)): keys
// sorted, four-space indent, non-ASCII characters as \u escapes, no trailing newline.
func (f *File) Encode() ([]byte, error) {
	c := f.withDefaults()
	raw, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("apps.json: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("apps.json: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("apps.json: %w", err)
	}
	return asciiOnly(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// asciiOnly escapes every non-ASCII character as Python's ensure_ascii does (UTF-16 surrogate pairs
// above U+FFFF). Outside strings JSON is ASCII, so the whole document can be rewritten.
func asciiOnly(b []byte) []byte {
	var out bytes.Buffer
	for _, r := range string(b) {
		if r < 0x80 {
			out.WriteByte(byte(r))
			continue
		}
		if r > 0xFFFF {
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&out, `\u%04x\u%04x`, r1, r2)
			continue
		}
		fmt.Fprintf(&out, `\u%04x`, r)
	}
	return out.Bytes()
}
