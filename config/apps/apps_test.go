package apps

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hostos/hostos/config/compose"
	"github.com/hostos/hostos/tests/testtool"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func project(t *testing.T, file string) *compose.Project {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := compose.Parse(data, compose.WithEnv(map[string]string{"WEB_TAG": "2.3"}))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func checkGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("differs from %s:\n%s", golden, got)
	}
}

// TestGolden builds apps.json from each compose fixture, from the default compose, and compares with the
// golden files; each must validate, decode back to the same value and re-encode to the same bytes.
func TestGolden(t *testing.T) {
	cases := map[string]struct {
		p   func(t *testing.T) *compose.Project
		rel Release
		pin bool
	}{
		"multicontainer": {
			p: func(t *testing.T) *compose.Project { return project(t, "testdata/multicontainer.yml") },
			rel: Release{AppName: "site", Images: map[string]string{
				"proxy": "registry.example/v2/3e4f@sha256:6f30b18ed4ef19daceb79957f2115eb1c9c66953efa1694cde4f260c709bcea0",
			}},
		},
		"features": {
			p:   func(t *testing.T) *compose.Project { return project(t, "testdata/features.yml") },
			rel: Release{AppName: "edge", AppUUID: "c0ffee00c0ffee00c0ffee00c0ffee00", AppID: 42, Commit: "deadbeefdeadbeefdeadbeefdeadbeef", ReleaseID: 7, Config: map[string]string{"BALENA_HOST_CONFIG_gpu_mem": "64"}},
			pin: true,
		},
		"default": {
			p:   func(t *testing.T) *compose.Project { return compose.Default("registry.example/app:1.0") },
			rel: Release{AppName: "single"},
			pin: true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f, err := FromCompose(tc.p(t), tc.rel, tc.pin)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := f.Encode()
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("testdata", name+".apps.json"), enc)
			back, err := Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			if err := back.Validate(); err != nil {
				t.Fatal(err)
			}
			again, err := back.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, again) {
				t.Errorf("decode and encode changed the file:\n%s", again)
			}
			again2, _ := FromCompose(tc.p(t), tc.rel, tc.pin)
			if !reflect.DeepEqual(f, again2) {
				t.Error("FromCompose is not deterministic")
			}
		})
	}
}

func onlyRelease(t *testing.T, f *File) (string, App, string, AppRelease) {
	t.Helper()
	if len(f.Apps) != 1 {
		t.Fatalf("%d apps", len(f.Apps))
	}
	for uuid, a := range f.Apps {
		if len(a.Releases) != 1 {
			t.Fatalf("%d releases", len(a.Releases))
		}
		for commit, r := range a.Releases {
			return uuid, a, commit, r
		}
	}
	panic("unreachable")
}

// TestFromCompose checks the structure the supervisor reads, independently of the golden files.
func TestFromCompose(t *testing.T) {
	p := project(t, "testdata/multicontainer.yml")
	ref := "registry.example/v2/3e4f@sha256:6f30b18ed4ef19daceb79957f2115eb1c9c66953efa1694cde4f260c709bcea0"
	f, err := FromCompose(p, Release{AppName: "site", Images: map[string]string{"proxy": ref}}, false)
	if err != nil {
		t.Fatal(err)
	}
	uuid, app, commit, rel := onlyRelease(t, f)
	if len(uuid) != 32 || len(commit) != 32 || app.Name != "site" || app.Class != "fleet" || app.ID <= 0 || rel.ID <= 0 || f.PinDevice {
		t.Errorf("app %s %+v release %s id %d pin %v", uuid, app, commit, rel.ID, f.PinDevice)
	}
	if got := rel.Services["proxy"].Image; got != ref {
		t.Errorf("proxy image %q", got)
	}
	if got := rel.Services["frontend"].Image; got != "registry.example/frontend:1.0" {
		t.Errorf("frontend image %q", got)
	}
	ids := map[ID]bool{}
	for name, s := range rel.Services {
		if s.ID <= 0 || s.ImageID <= 0 || ids[s.ID] {
			t.Errorf("service %s ids %d %d", name, s.ID, s.ImageID)
		}
		ids[s.ID] = true
	}
	if got := rel.Services["proxy"].Composition["depends_on"]; !reflect.DeepEqual(got, []any{"data", "frontend"}) {
		t.Errorf("proxy depends_on %v", got)
	}
	if got := rel.Services["data"].Labels["io.balena.features.dbus"]; got != "1" {
		t.Errorf("data labels %v", rel.Services["data"].Labels)
	}
	if _, ok := rel.Volumes["resin-data"]; !ok {
		t.Errorf("volumes %v", rel.Volumes)
	}

	// Another image gives another commit and release id; the app keeps its uuid and id.
	f2, err := FromCompose(p, Release{AppName: "site", Images: map[string]string{"proxy": ref + "x"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	uuid2, app2, commit2, rel2 := onlyRelease(t, f2)
	if uuid2 != uuid || app2.ID != app.ID || commit2 == commit || rel2.ID == rel.ID {
		t.Errorf("derivation: uuid %s/%s id %d/%d commit %s/%s release %d/%d", uuid, uuid2, app.ID, app2.ID, commit, commit2, rel.ID, rel2.ID)
	}

	// Contracts from requirement labels.
	fp := project(t, "testdata/features.yml")
	f3, err := FromCompose(fp, Release{}, false)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, rel3 := onlyRelease(t, f3)
	c := rel3.Services["agent"].Contract
	if c["type"] != "sw.container" || c["slug"] != "contract-for-agent" || len(c["requires"].([]any)) != 2 {
		t.Errorf("contract %v", c)
	}

	for _, bad := range []struct {
		rel  Release
		want string
	}{
		{Release{Images: map[string]string{"nope": "x"}}, "service nope"},
		{Release{AppID: -1}, "negative"},
		{Release{AppUUID: "12345"}, "numeric app key"},
		{Release{AppName: strings.Repeat("n", 256)}, "255"},
	} {
		if _, err := FromCompose(p, bad.rel, false); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: error %v, want %q", bad.rel, err, bad.want)
		}
	}
	build, _, err := compose.Parse([]byte("services:\n  a:\n    build: .\n"), compose.AllowBuild())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromCompose(build, Release{}, false); err == nil || !strings.Contains(err.Error(), "service a has no image") {
		t.Errorf("build-only: %v", err)
	}
}

// TestSupervisorShape decodes a file in the shape of the supervisor's own test/data/apps.json (string ids,
// io.resin labels, no class, no volumes) and validates it.
func TestSupervisorShape(t *testing.T) {
	data, err := os.ReadFile("testdata/supervisor-shape.json")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	app := f.Apps["5e3a0f1c9b7d4e2a8c6f0b1d3e5a7c9f"]
	rel := app.Releases["0f9e8d7c6b5a49382716051423324150"]
	s := rel.Services["sensor"]
	if app.ID != 4321 || app.Class != "fleet" || rel.ID != 77 || s.ImageID != 90210 || s.ID != 901 || f.Config["BALENA_HOST_CONFIG_gpu_mem"] != "128" || f.PinDevice {
		t.Errorf("decoded %+v", f)
	}
	if rel.Volumes == nil || rel.Networks == nil || s.Environment == nil {
		t.Error("defaults not filled")
	}
}

// TestEncodeLikePython compares Encode with Python's json.dump(indent=4, sort_keys=True), which is how
// balena-preload writes apps.json.
func TestEncodeLikePython(t *testing.T) {
	python := testtool.Need(t, "python3")
	f, err := FromCompose(project(t, "testdata/features.yml"), Release{AppName: "éte 🌍 <tag> & \"q\"", Config: map[string]string{"K": "\u2028\x01"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-c", "import json,sys; sys.stdout.write(json.dumps(json.load(sys.stdin), indent=4, sort_keys=True))")
	cmd.Stdin = bytes.NewReader(enc)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	if !bytes.Equal(enc, out) {
		t.Errorf("Encode differs from Python's json.dump:\n%s\npython:\n%s", enc, out)
	}
}

func TestValidate(t *testing.T) {
	base := func() *File {
		f, err := Decode([]byte(`{"config": {}, "apps": {"a1b2": {"id": 1, "name": "n", "class": "fleet", "releases": {"c0": {"id": 2, "services": {"main": {"id": 3, "image_id": 4, "image": "img", "environment": {"A": "1"}, "labels": {"l": "v"}}}}}}}}`))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("base: %v", err)
	}
	edit := func(fn func(f *File, a *App, r *AppRelease, s *Service)) *File {
		f := base()
		a := f.Apps["a1b2"]
		r := a.Releases["c0"]
		s := r.Services["main"]
		fn(f, &a, &r, &s)
		if s.Image != "\x00deleted" {
			r.Services["main"] = s
		}
		a.Releases["c0"] = r
		f.Apps["a1b2"] = a
		return f
	}
	for _, tc := range []struct {
		name string
		f    *File
		want string
	}{
		{"config key", edit(func(f *File, a *App, r *AppRelease, s *Service) { f.Config["1A"] = "x" }), `config "1A"`},
		{"config colon ok", nil, ""},
		{"negative app id", edit(func(f *File, a *App, r *AppRelease, s *Service) { a.ID = -1 }), `apps["a1b2"].id`},
		{"long name", edit(func(f *File, a *App, r *AppRelease, s *Service) { a.Name = strings.Repeat("é", 256) }), `.name`},
		{"class", edit(func(f *File, a *App, r *AppRelease, s *Service) { a.Class = "device" }), `.class`},
		{"no releases", func() *File { f := base(); a := f.Apps["a1b2"]; a.Releases = nil; f.Apps["a1b2"] = a; return f }(), "no release"},
		{"service key", edit(func(f *File, a *App, r *AppRelease, s *Service) { r.Services["-x"] = *s }), `services["-x"]`},
		{"volume key", edit(func(f *File, a *App, r *AppRelease, s *Service) { r.Volumes = map[string]map[string]any{"a b": {}} }), `volumes["a b"]`},
		{"env key", edit(func(f *File, a *App, r *AppRelease, s *Service) { s.Environment["A-B"] = "x" }), `environment["A-B"]`},
		{"label key", edit(func(f *File, a *App, r *AppRelease, s *Service) { s.Labels["a`b"] = "x" }), "labels[\"a`b\"]"},
		{"label space", edit(func(f *File, a *App, r *AppRelease, s *Service) { s.Labels["a b"] = "x" }), `labels["a b"]`},
		{"image id", edit(func(f *File, a *App, r *AppRelease, s *Service) { s.ImageID = -4 }), "image_id"},
		{"empty image", edit(func(f *File, a *App, r *AppRelease, s *Service) { s.Image = "" }), "image: empty"},
		{"long image", edit(func(f *File, a *App, r *AppRelease, s *Service) { s.Image = strings.Repeat("i", 256) }), "image: more than 255"},
		{"numeric app key", func() *File { f := base(); f.Apps["123"] = f.Apps["a1b2"]; return f }(), "numeric app key"},
		{"long uuid", func() *File { f := base(); f.Apps[strings.Repeat("u", 256)] = f.Apps["a1b2"]; return f }(), "at most 255"},
		{"pin without fleet", edit(func(f *File, a *App, r *AppRelease, s *Service) { f.PinDevice = true; a.Class = "block" }), "pinDevice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.f == nil {
				f := base()
				f.Config["BALENA_HOST_CONFIG_dtoverlay:0"] = "x"
				if err := f.Validate(); err != nil {
					t.Fatal(err)
				}
				return
			}
			err := tc.f.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %v, want one line with %q", err, tc.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{``, "empty"},
		{`[{"appId": 1}]`, "legacy"},
		{`"x"`, "a JSON string"},
		{`{"apps": []}`, "apps"},
		{`{"config": {"A": 1}}`, "string"},
		{`{"apps": {"a": {"id": 1.5}}}`, "not an integer"},
		{`{"apps": {"a": {"id": "x"}}}`, "not an integer"},
		{`{"apps": {"a": {"id": null}}}`, "null"},
		{`{} {}`, "after the object"},
		{`{"apps": {"a": {"id": 1, "name": "n", "releases": {"r": {"id": 1, "services": {"s": {"id": 1, "image_id": 2, "image": "i", "labels": {}, "environment": {"A": null}}}}}}}}`, `environment["A"] is null`},
		{`{"apps": {"a": {"id": 1, "name": "n", "releases": {"r": {"id": 1, "services": {"s": {"id": 1, "image": "i", "labels": {}, "environment": {}}}}}}}}`, "image_id is null or missing"},
		{`{"apps": {"a": {"name": "n"}}}`, "id is null or missing"},
	} {
		_, err := Decode([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line with %q", tc.doc, err, tc.want)
		}
	}
	if _, err := Decode(append([]byte(`{"config":{}}`), bytes.Repeat([]byte(" "), MaxSize)...)); err == nil {
		t.Error("oversized file decoded")
	}
}

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"testdata/supervisor-shape.json", "testdata/default.apps.json", "testdata/features.apps.json"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"apps":{"a":{"id":"1","releases":{"r":{"id":1e2}}}},"pinDevice":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Decode(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		_ = file.Validate()
		enc, err := file.Encode()
		if err != nil {
			t.Fatalf("encode of a decoded file: %v", err)
		}
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("decode of an encoded file: %v\n%s", err, enc)
		}
		enc2, err := back.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %v\n%s\n%s", err, enc, enc2)
		}
		var v any
		if err := json.Unmarshal(enc, &v); err != nil {
			t.Fatalf("encoded file is not JSON: %v", err)
		}
	})
}
