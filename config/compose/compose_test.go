package compose

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// goldenEnv is the interpolation environment of the golden files.
var goldenEnv = map[string]string{"WEB_TAG": "2.3"}

// TestGolden parses every testdata/*.yml and compares the project and the warnings with its .golden.json.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			orig := bytes.Clone(data)
			p, warnings, err := Parse(data, WithEnv(goldenEnv), AllowBuild(), WithFilename(filepath.Base(f)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, orig) {
				t.Fatal("Parse changed its input")
			}
			got, err := json.MarshalIndent(struct {
				Project  *Project
				Warnings []string
			}{p, warnings}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(f, ".yml") + ".golden.json"
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
				t.Errorf("%s differs from %s:\n%s", f, golden, got)
			}
		})
	}
}

// TestMulticontainer checks seed 001's example field by field, independently of the golden file.
func TestMulticontainer(t *testing.T) {
	data, err := os.ReadFile("testdata/multicontainer.yml")
	if err != nil {
		t.Fatal(err)
	}
	p, warnings, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range p.Services {
		names = append(names, s.Name)
	}
	if want := []string{"data", "frontend", "gpio", "proxy"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}
	proxy, _ := p.Service("proxy")
	if !reflect.DeepEqual(proxy.DependsOn, []string{"data", "frontend"}) || !reflect.DeepEqual(proxy.Ports, []string{"80:80"}) {
		t.Errorf("proxy: depends_on %v ports %v", proxy.DependsOn, proxy.Ports)
	}
	if !reflect.DeepEqual(proxy.Composition["depends_on"], []any{"data", "frontend"}) {
		t.Errorf("proxy composition depends_on %v", proxy.Composition["depends_on"])
	}
	data2, _ := p.Service("data")
	f := data2.Features
	if !(f.BalenaSocket && f.DBus && f.Sysfs && f.Procfs && f.KernelModules && f.Firmware && f.JournalLogs && f.SupervisorAPI && f.BalenaAPI) || f.GPU {
		t.Errorf("data features %+v", f)
	}
	if data2.Update.Strategy != StrategyDownloadThenKill || data2.Update.HandoverTimeoutMS != 0 {
		t.Errorf("data update %+v", data2.Update)
	}
	if !reflect.DeepEqual(data2.Volumes, []Mount{{Source: "resin-data", Target: "/data"}}) {
		t.Errorf("data volumes %+v", data2.Volumes)
	}
	if _, ok := p.Volumes["resin-data"]; !ok || len(p.Volumes) != 1 {
		t.Errorf("volumes %v", p.Volumes)
	}
	frontend, _ := p.Service("frontend")
	if frontend.Build == nil || frontend.Build.Context != "./frontend" || frontend.Restart != "always" {
		t.Errorf("frontend %+v", frontend)
	}
	if _, ok := frontend.Composition["expose"]; ok {
		t.Error("expose kept in the composition")
	}
	gpio, _ := p.Service("gpio")
	if !reflect.DeepEqual(gpio.Devices, []string{"/dev/i2c-1:/dev/i2c-1:rwm", "/dev/mem:/dev/mem:rwm", "/dev/ttyACM0:/dev/ttyACM0:rwm"}) ||
		!reflect.DeepEqual(gpio.CapAdd, []string{"SYS_RAWIO"}) || gpio.Restart != "on-failure" ||
		gpio.Ulimits["core"] != (Ulimit{Soft: -1, Hard: -1}) {
		t.Errorf("gpio %+v", gpio)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], "expose") {
		t.Errorf("warnings %q", warnings)
	}
}

// flatten lists every leaf of a decoded YAML document by its dotted path.
func flatten(prefix string, v any, out map[string]any) {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 0 {
			out[prefix] = "{}"
		}
		for k, e := range v {
			flatten(join(prefix, k), e, out)
		}
	case []any:
		for i, e := range v {
			flatten(join(prefix, string(rune('0'+i))), e, out)
		}
	default:
		out[prefix] = v
	}
}

func decodeYAML(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDefaultMatchesSeed compares DefaultFile key by key with seed 000's default compose, and Default with
// what Parse makes of DefaultFile.
func TestDefaultMatchesSeed(t *testing.T) {
	seed, err := os.ReadFile("testdata/seed000-default.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{}
	flatten("", decodeYAML(t, seed), want)
	for _, image := range []string{"", "registry.example/app:1.0", "it's $odd"} {
		got := map[string]any{}
		flatten("", decodeYAML(t, DefaultFile(image)), got)
		w := map[string]any{}
		for k, v := range want {
			w[k] = v
		}
		if image != "" {
			delete(w, "services.main.build.context")
			w["services.main.image"] = image
			if got["services.main.image"] == strings.ReplaceAll(image, "$", "$$") {
				got["services.main.image"] = image // $$ is compose's literal dollar
			}
		}
		for k, v := range w {
			if got[k] != v {
				t.Errorf("image %q: %s = %v, seed 000 has %v", image, k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := w[k]; !ok {
				t.Errorf("image %q: %s is not in seed 000", image, k)
			}
		}
		p, warnings, err := Parse(DefaultFile(image), AllowBuild())
		if err != nil || len(warnings) != 0 {
			t.Fatalf("image %q: %v %q", image, err, warnings)
		}
		if !reflect.DeepEqual(p, Default(image)) {
			t.Errorf("image %q: Default differs from Parse(DefaultFile)", image)
		}
		if p.Services[0].Image != image {
			t.Errorf("image %q: parsed %q", image, p.Services[0].Image)
		}
	}
	if len(want) != 13 {
		t.Errorf("seed has %d keys, want 13 (the fixture changed?)", len(want))
	}
}

func TestWarnings(t *testing.T) {
	data := []byte(`version: '2.1'
services:
  a:
    image: x
    labels:
      io.balena.features.nonsense: '1'
      io.balena.app-id: '7'
      io.balena.private.thing: 'x'
    environment:
      A: ${UNSET}
      B: ${UNSET_WITH_DEFAULT:-d}
    mac_address: 02:42:ac:11:00:02
    annotations:
      a: b
`)
	p, warnings, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"io.balena.features.nonsense: unknown feature",
		"io.balena.app-id is set by the supervisor",
		"io.balena.private",
		"variable UNSET is not set",
		"annotations is not applied by the balena supervisor",
	}
	all := strings.Join(warnings, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("no warning with %q in:\n%s", w, all)
		}
	}
	if strings.Contains(all, "UNSET_WITH_DEFAULT") || strings.Contains(all, "mac_address") {
		t.Errorf("spurious warning in:\n%s", all)
	}
	if !strings.HasPrefix(warnings[0], "docker-compose.yml:") {
		t.Errorf("warning without file: %q", warnings[0])
	}
	a, _ := p.Service("a")
	if a.Environment["B"] != "d" || a.Environment["A"] != "" {
		t.Errorf("environment %v", a.Environment)
	}
}

func TestErrors(t *testing.T) {
	svc := func(body string) string {
		return "services:\n  app:\n    image: x\n" + body
	}
	for _, tc := range []struct {
		name, doc string
		want      []string // substrings of the error
	}{
		{"build only", "services:\n  web:\n    build: ./web\n", []string{"docker-compose.yml:3:", "service web has only build:; build it first and pass the image with --images"}},
		{"bind mount", svc("    volumes:\n      - /data:/data\n"), []string{":5:", "service app", "bind mount /data:/data", "not supported"}},
		{"relative bind", svc("    volumes:\n      - ./data:/data\n"), []string{":5:", "bind mount ./data:/data"}},
		{"long bind", svc("    volumes:\n      - type: bind\n        source: /etc\n        target: /x\n"), []string{":5:", "bind mount /etc:/x"}},
		{"anonymous volume", svc("    volumes:\n      - /data\n"), []string{":5:", "anonymous volume"}},
		{"undeclared volume", svc("    volumes:\n      - nope:/data\n"), []string{"nope"}},
		{"syntax", "services:\n  app:\n    image: x\n   bad: [\n", []string{"line 3", "did not find expected key"}},
		{"tab", "services:\n\tapp:\n", []string{"line 2"}},
		{"denied field", svc("    logging:\n      driver: none\n"), []string{":4:", "service app: logging is not supported by balena"}},
		{"denied build field", svc("    build:\n      context: .\n      ssh: [default]\n"), []string{":6:", "build.ssh"}},
		{"unknown field", svc("    bogus: 1\n"), []string{":4:", "bogus"}},
		{"bad type", svc("    privileged: maybe\n"), []string{":4:", "privileged"}},
		{"long depends_on", "services:\n  b:\n    image: y\n" + strings.TrimPrefix(svc("    depends_on:\n      b:\n        condition: service_healthy\n"), "services:\n"), []string{":7:", "depends_on b"}},
		{"container network", svc("    network_mode: container:abc\n"), []string{":4:", "network_mode container:abc"}},
		{"security_opt", svc("    security_opt: [label=disable]\n"), []string{":4:", "security_opt label=disable"}},
		{"env name", svc("    environment:\n      A.B: c\n"), []string{":4:", `environment variable "A.B"`}},
		{"label name", svc("    labels:\n      \"a b\": c\n"), []string{":5:", `label "a b"`}},
		{"feature value", svc("    labels:\n      io.balena.features.dbus: 'yes please'\n"), []string{":5:", "io.balena.features.dbus", "not a boolean"}},
		{"strategy", svc("    labels:\n      io.balena.update.strategy: eventually\n"), []string{":5:", "not an update strategy"}},
		{"handover", svc("    labels:\n      io.balena.update.handover-timeout: soon\n"), []string{":5:", "milliseconds"}},
		{"arch requirement", svc("    labels:\n      io.balena.features.requires.arch.sw: sparc\n"), []string{":5:", "not an architecture"}},
		{"restart", svc("    restart: sometimes\n"), []string{":4:", "restart"}},
		{"service name", "services:\n  _app:\n    image: x\n", []string{":2:", "service _app"}},
		{"network driver", "networks:\n  n:\n    driver: overlay\n" + svc(""), []string{":3:", "network n: driver overlay"}},
		{"external volume", "volumes:\n  v:\n    external: true\n" + svc(""), []string{":3:", "volume v: external"}},
		{"volume driver", "volumes:\n  v:\n    driver: nfs\n" + svc(""), []string{":3:", "volume v: driver nfs"}},
		{"secrets", "secrets:\n  s:\n    file: ./s\n" + svc(""), []string{":1:", "secrets"}},
		{"env_file", svc("    env_file: .env\n"), []string{":4:", "env_file"}},
		{"include", "include:\n  - other.yml\n" + svc(""), []string{":1:", "include"}},
		{"no services", "version: '2.1'\n", []string{"no services"}},
		{"empty", "", []string{"empty"}},
		{"two documents", svc("") + "---\nservices: {}\n", []string{"second YAML document"}},
		{"not a mapping", "- a\n- b\n", []string{"not a mapping"}},
		{"cdi device", svc("    devices:\n      - vendor.com/gpu=all\n"), []string{":5:", "CDI"}},
		{"tmpfs options", svc("    volumes:\n      - type: tmpfs\n        target: /t\n        tmpfs:\n          size: 1000\n"), []string{":5:", "tmpfs options"}},
		{"interpolation", svc("    environment:\n      A: ${X:?X is required}\n"), []string{"X is required"}},
		{"port range", svc("    ports:\n      - '1-65535:1-65535'\n"), []string{":4:", "65535 ports"}},
		{"ipv6", "networks:\n  n:\n    enable_ipv6: true\n" + svc(""), []string{":3:", "enable_ipv6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.doc)
			orig := bytes.Clone(data)
			_, _, err := Parse(data)
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.doc)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if !bytes.Equal(data, orig) {
				t.Error("Parse changed its input")
			}
		})
	}
}

func TestInterpolation(t *testing.T) {
	doc := []byte("services:\n  app:\n    image: reg/app:${TAG}\n    privileged: ${PRIV}\n    environment:\n      COST: $$5\n")
	p, warnings, err := Parse(doc, WithEnv(map[string]string{"TAG": "v2", "PRIV": "yes"}))
	if err != nil {
		t.Fatal(err)
	}
	app := p.Services[0]
	if app.Image != "reg/app:v2" || !app.Privileged || app.Environment["COST"] != "$5" || len(warnings) != 0 {
		t.Errorf("image %q privileged %v env %v warnings %q", app.Image, app.Privileged, app.Environment, warnings)
	}
}

// TestBounded: oversized input, an alias bomb and deep nesting end quickly with an error.
func TestBounded(t *testing.T) {
	laughs := "services: {}\nx-a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		laughs += "x-" + n + ": &" + n + " [" + strings.TrimSuffix(strings.Repeat("*"+prev+",", 9), ",") + "]\n"
		prev = n
	}
	cases := map[string][]byte{
		"billion laughs": []byte(laughs),
		"too large":      append([]byte("services:\n  a:\n    image: x\n#"), bytes.Repeat([]byte("x"), MaxSize)...),
		"deep nesting":   []byte("services: " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n"),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, _, err := Parse(data); done <- err }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("no error")
				}
				t.Log(err)
			case <-time.After(time.Minute):
				t.Fatal("Parse did not finish in a minute")
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("services:\n  a: &a {image: x}\n  b: *a\n"))
	f.Add([]byte("services:\n  a:\n    image: x\n    ports: ['1-65535:1-65535']\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, _, err := Parse(data, AllowBuild())
		if err == nil && p == nil {
			t.Fatal("nil project without error")
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error spans lines: %q", err)
		}
	})
}

// TestWithDir: env_file is read relative to the directory the caller passes, and only then.
func TestWithDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.env"), []byte("FROM_FILE=yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := []byte("services:\n  app:\n    image: x\n    env_file: app.env\n")
	if _, _, err := Parse(doc); err == nil || !strings.Contains(err.Error(), "env_file") {
		t.Fatalf("without a directory: %v", err)
	}
	p, _, err := Parse(doc, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Services[0].Environment["FROM_FILE"]; got != "yes" {
		t.Errorf("FROM_FILE = %q", got)
	}
	if _, ok := p.Services[0].Composition["env_file"]; ok {
		t.Error("env_file kept in the composition")
	}
}
