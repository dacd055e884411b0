package release

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/config/compose"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// treeSum fingerprints a folder: every path, mode, link target and content.
func treeSum(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", p, fi.Mode(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintln(h, target)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// render renders project for slug into a new folder, checking the project is left as it was; it returns
// the result and the warnings.
func render(t *testing.T, project, slug string, o Options) (*Rendered, []string, error) {
	t.Helper()
	before := treeSum(t, project)
	var warnings []string
	o.DeviceType = slug
	o.Log = func(s string) { warnings = append(warnings, s) }
	r, err := Render(t.Context(), project, filepath.Join(t.TempDir(), "out"), o)
	if after := treeSum(t, project); after != before {
		t.Errorf("Render changed the project %s", project)
	}
	return r, warnings, err
}

func TestRenderVariables(t *testing.T) {
	// intel-nuc: a device type whose slug is not its Yocto machine (genericx86-64); balena renders the slug.
	r, warnings, err := render(t, "testdata/variables/project", "intel-nuc", Options{AppName: "fleet", ReleaseHash: "0123abcd"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Arch != "amd64" || r.Machine != "intel-nuc" {
		t.Errorf("Arch, Machine = %s, %s; want amd64, intel-nuc", r.Arch, r.Machine)
	}
	main := r.Services[0]
	if len(r.Services) != 1 || main.Name != "main" || main.Dockerfile != "Dockerfile" {
		t.Fatalf("services = %+v, want main built from Dockerfile", r.Services)
	}
	got, err := os.ReadFile(filepath.Join(main.Context, main.Dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "variables/Dockerfile.golden", got)
	want := []string{"service main: Dockerfile.template line 6: %%BALENA_FOO%% is not a build variable; left as written"}
	if !reflect.DeepEqual(warnings, want) {
		t.Errorf("warnings = %q, want %q", warnings, want)
	}

	// Without app name and release hash: the project folder's name and "unavailable", as balena-cli.
	r, _, err = render(t, "testdata/variables/project", "raspberry-pi", Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(filepath.Join(r.Services[0].Context, "Dockerfile"))
	for _, line := range []string{"FROM balenalib/raspberry-pi-debian", "LABEL arch=rpi machine=raspberry-pi",
		"ENV APP=project RELEASE=unavailable SERVICE=main"} {
		if !strings.Contains(string(got), line+"\n") {
			t.Errorf("rendered for raspberry-pi without options: no line %q in\n%s", line, got)
		}
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"AB": "x", "A_B": "y"}
	for in, want := range map[string]string{
		"%%AB%%":          "x",
		"%%%AB%%%":        "%x%",
		"%%AB%%%%A_B%%":   "xy",
		"%%_AB%%":         "%%_AB%%", // a name starts with a letter
		"%%A%%":           "%%A%%",   // and has two characters at least
		"%%ab%%":          "%%ab%%",
		"%%AB %%":         "%%AB %%",
		"50%% of %%AB%%":  "50%% of x",
		"%%NOPE%% %%AB%%": "%%NOPE%% x",
	} {
		var unknown []string
		if got := expand(in, vars, func(v string) { unknown = append(unknown, v) }); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(in, "NOPE") != (len(unknown) == 1 && unknown[0] == "NOPE") {
			t.Errorf("expand(%q): unknown variables %q", in, unknown)
		}
	}
}

// TestDockerfilePreference: Dockerfile.<device-type>, then Dockerfile.<arch>, Dockerfile.template,
// Dockerfile, then package.json; another device type's or arch's Dockerfile is never taken.
func TestDockerfilePreference(t *testing.T) {
	all := []string{"Dockerfile.raspberrypi3", "Dockerfile.armv7hf", "Dockerfile.template", "Dockerfile", "package.json"}
	for i, want := range all {
		dir := t.TempDir()
		files := append([]string{"Dockerfile.raspberrypi4-64", "Dockerfile.aarch64", "Dockerfile.amd64"}, all[i:]...)
		for _, f := range files {
			content := "FROM " + f + " %%BALENA_MACHINE_NAME%%\n"
			if f == "package.json" {
				content = `{"scripts": {"start": "node a.js"}}`
			}
			if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		r, _, err := render(t, dir, "raspberrypi3", Options{})
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		got, _ := os.ReadFile(filepath.Join(r.Services[0].Context, "Dockerfile"))
		wantLine := "FROM " + want + " raspberrypi3\n"
		switch want {
		case "Dockerfile":
			wantLine = "FROM Dockerfile %%BALENA_MACHINE_NAME%%\n" // not a template
		case "package.json":
			wantLine = "FROM balenalib/raspberrypi3-node\n"
		}
		if !strings.HasPrefix(string(got), wantLine) {
			t.Errorf("with %v: rendered Dockerfile starts %q, want %q", files, firstLineOf(got), wantLine)
		}
	}
}

func firstLineOf(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// TestExplicitDockerfile: the compose file's build.dockerfile wins, and is rendered when it is a template.
func TestExplicitDockerfile(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "docker-compose.yml", "services:\n  a:\n    build:\n      context: a\n      dockerfile: docker/Prod.template\n  b:\n    build:\n      context: b\n      dockerfile: Custom\n")
	write(t, dir, "a/Dockerfile.template", "FROM wrong\n")
	write(t, dir, "a/docker/Prod.template", "FROM prod-%%BALENA_ARCH%%\n")
	write(t, dir, "b/Dockerfile", "FROM wrong\n")
	write(t, dir, "b/Custom", "FROM custom-%%BALENA_ARCH%%\n")
	r, _, err := render(t, dir, "raspberrypi4-64", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ svc, name, content string }{
		{"a", "docker/Prod", "FROM prod-aarch64\n"},
		{"b", "Custom", "FROM custom-%%BALENA_ARCH%%\n"},
	} {
		s := serviceNamed(t, r, tc.svc)
		got, err := os.ReadFile(filepath.Join(s.Context, filepath.FromSlash(s.Dockerfile)))
		if s.Dockerfile != tc.name || err != nil || string(got) != tc.content {
			t.Errorf("service %s: Dockerfile %s = %q (%v), want %s = %q", tc.svc, s.Dockerfile, got, err, tc.name, tc.content)
		}
	}
}

func serviceNamed(t *testing.T, r *Rendered, name string) Service {
	t.Helper()
	for _, s := range r.Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no service %s in %+v", name, r.Services)
	return Service{}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNodeProject: a folder with only package.json is built as seed 000 says: npm install, then npm start
// when there is a start script, else node server.js.
func TestNodeProject(t *testing.T) {
	for _, name := range []string{"start", "server"} {
		r, _, err := render(t, "testdata/node/"+name, "raspberrypi4-64", Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := os.ReadFile(filepath.Join(r.Services[0].Context, "Dockerfile"))
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "node/"+name+".golden", got)
		if _, err := os.Stat(filepath.Join(r.Services[0].Context, "package.json")); err != nil {
			t.Errorf("%s: package.json not in the build context: %v", name, err)
		}
	}
}

// TestDefaultCompose: a lone Dockerfile gets seed 000's default compose, key by key, its build pointing at
// the rendered context; a plain Dockerfile is copied as it is.
func TestDefaultCompose(t *testing.T) {
	r, _, err := render(t, "testdata/single/project", "genericx86-64-ext", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got, seed map[string]any
	if err := yaml.Unmarshal(r.Compose, &got); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(r.ComposeFile)
	if err != nil || string(onDisk) != string(r.Compose) {
		t.Errorf("%s holds %q (%v), want Rendered.Compose", r.ComposeFile, onDisk, err)
	}
	seedFile, err := os.ReadFile("../../config/compose/testdata/seed000-default.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(seedFile, &seed); err != nil {
		t.Fatal(err)
	}
	seed["services"].(map[string]any)["main"].(map[string]any)["build"] = map[string]any{"context": "./services/main", "dockerfile": "Dockerfile"}
	compareKeys(t, "", got, seed)

	// The resolved file reads back as balena's default project.
	proj, _, err := compose.Parse(r.Compose, compose.AllowBuild(), compose.WithDir(r.Dir))
	if err != nil {
		t.Fatal(err)
	}
	want := compose.Default("")
	if !reflect.DeepEqual(proj.Services[0].Composition, want.Services[0].Composition) || !reflect.DeepEqual(proj.Volumes, want.Volumes) {
		t.Errorf("resolved default compose reads as %+v, want %+v", proj.Services[0], want.Services[0])
	}
	df, _ := os.ReadFile(filepath.Join(r.Services[0].Context, "Dockerfile"))
	if want, _ := os.ReadFile("testdata/single/project/Dockerfile"); string(df) != string(want) {
		t.Errorf("plain Dockerfile rendered as %q, want it unchanged", df)
	}
}

// compareKeys reports every key whose value differs between got and want, by its dotted path.
func compareKeys(t *testing.T, at string, got, want any) {
	t.Helper()
	gm, gok := got.(map[string]any)
	wm, wok := want.(map[string]any)
	if !gok || !wok {
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", at, got, want)
		}
		return
	}
	keys := map[string]bool{}
	for k := range gm {
		keys[k] = true
	}
	for k := range wm {
		keys[k] = true
	}
	for k := range keys {
		compareKeys(t, strings.TrimPrefix(at+"."+k, "."), gm[k], wm[k])
	}
}

// TestMulticontainer renders seed 001's example (frontend from a Dockerfile.template with a .dockerignore,
// a proxy with build args, depends_on and ports, a Node.js data service with a named volume and feature
// labels, an image-only cache) and compares the whole output with the golden file.
func TestMulticontainer(t *testing.T) {
	r, warnings, err := render(t, "testdata/multicontainer/project", "raspberrypi3", Options{AppName: "myfleet", ReleaseHash: "f00d"})
	if err != nil {
		t.Fatal(err)
	}
	wantWarnings := []string{ // balena drops expose; config/compose says so with the line
		"docker-compose.yml:24: service data: expose is not used by balena; dropped",
		"docker-compose.yml:10: service frontend: expose is not used by balena; dropped",
	}
	if !reflect.DeepEqual(warnings, wantWarnings) {
		t.Errorf("warnings = %q, want %q", warnings, wantWarnings)
	}
	var b strings.Builder
	js, _ := json.MarshalIndent(r, "", "  ")
	b.Write(js)
	b.WriteString("\n")
	var files []string
	err = filepath.WalkDir(r.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	for _, p := range files {
		rel, _ := filepath.Rel(r.Dir, p)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "=== %s\n%s", filepath.ToSlash(rel), data)
	}
	out := regexp.MustCompile(regexp.QuoteMeta(r.Dir)).ReplaceAllString(b.String(), "OUT")
	golden(t, "multicontainer/render.golden", []byte(out))

	// The resolved compose keeps what seed 001 asks of each service.
	proj, _, err := compose.Parse(r.Compose, compose.AllowBuild(), compose.WithDir(r.Dir))
	if err != nil {
		t.Fatal(err)
	}
	proxy, _ := proj.Service("proxy")
	data, _ := proj.Service("data")
	if !reflect.DeepEqual(proxy.DependsOn, []string{"data", "frontend"}) || !reflect.DeepEqual(proxy.Ports, []string{"80:80"}) ||
		proxy.Build.Args["HAPROXY_VERSION"] != "2.8" {
		t.Errorf("proxy reads back as %+v", proxy)
	}
	if !data.Features.SupervisorAPI || !data.Features.DBus || len(data.Volumes) != 1 || data.Volumes[0].Source != "resin-data" {
		t.Errorf("data reads back as %+v", data)
	}
	if _, ok := proj.Volumes["resin-data"]; !ok {
		t.Errorf("named volume resin-data lost: %+v", proj.Volumes)
	}
}

func TestRenderBadInputs(t *testing.T) {
	emptyOut := t.TempDir()
	for _, tc := range []struct {
		name  string
		files map[string]string
		slug  string
		out   string // "" a new folder; "in" inside the project; "full" a folder with a file
		link  [2]string
		want  string
	}{
		{name: "nothing to build", files: map[string]string{"README.md": "hi"},
			want: "no docker-compose.yml, Dockerfile, Dockerfile.template or package.json"},
		{name: "service without Dockerfile", files: map[string]string{"docker-compose.yml": "services:\n  web:\n    build: ./web\n", "web/app.py": ""},
			want: "service web: no Dockerfile.raspberrypi3, Dockerfile.armv7hf, Dockerfile.template, Dockerfile or package.json in"},
		{name: "unsupported compose field", files: map[string]string{"docker-compose.yml": "services:\n  web:\n    build: .\n    logging:\n      driver: syslog\n", "Dockerfile": "FROM x\n"},
			want: "docker-compose.yml:4: service web: logging is not supported by balena"},
		{name: "unsupported build field", files: map[string]string{"docker-compose.yml": "services:\n  web:\n    build:\n      context: .\n      ssh: [default]\n", "Dockerfile": "FROM x\n"},
			want: "docker-compose.yml:5: service web: build.ssh is not supported by balena"},
		{name: "context outside the project", files: map[string]string{"docker-compose.yml": "services:\n  web:\n    build: ..\n"},
			want: "service web: build context"},
		{name: "Dockerfile outside the context", files: map[string]string{"docker-compose.yml": "services:\n  web:\n    build:\n      context: .\n      dockerfile: ../Dockerfile\n"},
			want: "service web: build.dockerfile ../Dockerfile is not inside the build context"},
		{name: "symlink out of the project", files: map[string]string{"Dockerfile": "FROM x\n"}, link: [2]string{"passwd", "/etc/passwd"},
			want: "service main: symlink passwd points outside the project (/etc/passwd)"},
		{name: "Dockerfile a symlink out of the project", link: [2]string{"Dockerfile", "/etc/passwd"},
			want: "leads outside the project"},
		{name: "service from a YAML merge", files: map[string]string{"docker-compose.yml": "x-base: &base\n  web:\n    build: .\nservices:\n  <<: *base\n", "Dockerfile": "FROM x\n"},
			want: "service web: not written out under services:"},
		{name: "unknown device type", files: map[string]string{"Dockerfile": "FROM x\n"}, slug: "raspberrypi4",
			want: `unknown device type "raspberrypi4": did you mean raspberrypi4-64`},
		{name: "output inside the project", files: map[string]string{"Dockerfile": "FROM x\n"}, out: "in",
			want: "render writes nothing into the project"},
		{name: "output not empty", files: map[string]string{"Dockerfile": "FROM x\n"}, out: "full",
			want: "is not empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				write(t, dir, name, content)
			}
			if tc.link[0] != "" {
				if err := os.Symlink(tc.link[1], filepath.Join(dir, tc.link[0])); err != nil {
					t.Fatal(err)
				}
			}
			slug := tc.slug
			if slug == "" {
				slug = "raspberrypi3"
			}
			out := filepath.Join(emptyOut, strings.ReplaceAll(tc.name, " ", "-"))
			switch tc.out {
			case "in":
				out = filepath.Join(dir, "out")
			case "full":
				write(t, out, "keep", "x")
			}
			before := treeSum(t, dir)
			_, err := Render(t.Context(), dir, out, Options{DeviceType: slug})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Render = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if tc.slug != "" && !errors.Is(err, config.ErrUnknownDeviceType) {
				t.Errorf("error %v does not wrap ErrUnknownDeviceType", err)
			}
			if treeSum(t, dir) != before {
				t.Errorf("the project changed")
			}
			if tc.out == "" {
				if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("output folder left behind after the error: %v", err)
				}
			}
		})
	}
}

// TestDockerignore: what .dockerignore excludes is not copied, its exceptions are; .git never is. Patterns
// are anchored at the context root, as Docker reads them: *.md is a top-level file, **/tmp any tmp.
func TestDockerignore(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"Dockerfile", "a.md", "docs/b.md", "docs/keep.md", "src/main.go", "src/gen/x.go",
		"deep/er/tmp/t", ".git/HEAD", "sub/.git/config", "node_modules/m/index.js"} {
		write(t, dir, f, f)
	}
	write(t, dir, ".dockerignore", "# comment\n*.md\ndocs\n!docs/*.md\n/src/gen\n**/tmp\nnode_modules\n")
	r, _, err := render(t, dir, "raspberrypi3", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	err = filepath.WalkDir(r.Services[0].Context, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(r.Services[0].Context, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	want := []string{".dockerignore", "Dockerfile", "docs/b.md", "docs/keep.md", "src/main.go"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("copied %q, want %q", got, want)
	}
}

// TestSymlinkInside: a link within the project is copied as a link.
func TestSymlinkInside(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "Dockerfile", "FROM x\n")
	write(t, dir, "conf/real.cfg", "x")
	if err := os.Symlink("conf/real.cfg", filepath.Join(dir, "app.cfg")); err != nil {
		t.Fatal(err)
	}
	r, _, err := render(t, dir, "raspberrypi3", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(r.Services[0].Context, "app.cfg")); err != nil || target != "conf/real.cfg" {
		t.Errorf("app.cfg copied as %q (%v), want a link to conf/real.cfg", target, err)
	}
}

// TestFileReferences: the files the compose file names are still found from the output folder.
func TestFileReferences(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "docker-compose.yml", "services:\n  web:\n    build: web\n    env_file: ./web.env\n  db:\n    image: redis\n    env_file:\n      - path: config/db.env\n")
	write(t, dir, "web/Dockerfile", "FROM x\n")
	write(t, dir, "web.env", "GREETING=hi\n")
	write(t, dir, "config/db.env", "MODE=fast\n")
	r, _, err := render(t, dir, "raspberrypi3", Options{})
	if err != nil {
		t.Fatal(err)
	}
	proj, _, err := compose.Parse(r.Compose, compose.AllowBuild(), compose.WithDir(r.Dir))
	if err != nil {
		t.Fatal(err)
	}
	web, _ := proj.Service("web")
	db, _ := proj.Service("db")
	if web.Environment["GREETING"] != "hi" || db.Environment["MODE"] != "fast" {
		t.Errorf("environment read from the resolved compose: web %v, db %v", web.Environment, db.Environment)
	}
}
