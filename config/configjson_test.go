package config

import (
	"bytes"
	"encoding/json"
	"github.com/hostos/hostos/tests/testtool"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// goldenInputs lists testdata/configjson/*.json; each has a .golden beside it holding the expected
// Encode output, produced by testdata/stringify.js (JSON.stringify with sorted keys) and checked
// against node again by TestEncodeMatchesJSONStringify.
func goldenInputs(t *testing.T) []string {
	t.Helper()
	inputs, err := filepath.Glob(filepath.Join("testdata", "configjson", "*.json"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	return inputs
}

func TestConfigGoldenRoundTrip(t *testing.T) {
	for _, in := range goldenInputs(t) {
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(in, ".json") + ".golden")
			if err != nil {
				t.Fatal(err)
			}
			c, err := ParseConfig(src)
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			got := c.Encode()
			if !bytes.Equal(got, want) {
				t.Fatalf("Encode:\n got %s\nwant %s", got, want)
			}
			// Encoding is a fixed point: parse the output again and get the same bytes.
			again, err := ParseConfig(got)
			if err != nil {
				t.Fatalf("ParseConfig(Encode()): %v", err)
			}
			if !bytes.Equal(again.Encode(), got) {
				t.Fatalf("second round trip changed the document:\n%s\n%s", again.Encode(), got)
			}
			// Same content as the source for encoding/json (numbers compared as text).
			var a, b any
			decodeNumbers(t, src, &a)
			decodeNumbers(t, got, &b)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("content changed:\n%v\n%v", a, b)
			}
		})
	}
}

func decodeNumbers(t *testing.T, data []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}

func TestEncodeMatchesJSONStringify(t *testing.T) {
	node := testtool.Need(t, "node")
	for _, in := range goldenInputs(t) {
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(node, filepath.Join("testdata", "stringify.js"))
			cmd.Stdin = bytes.NewReader(src)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			want, err := cmd.Output()
			if err != nil {
				t.Fatalf("node: %v: %s", err, stderr.Bytes())
			}
			c, err := ParseConfig(src)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Encode(); !bytes.Equal(got, want) {
				t.Fatalf("Encode differs from JSON.stringify:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestParseConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"empty", "", "empty document"},
		{"blank", " \n\t", "empty document"},
		{"null", "null", "null, not a JSON object"},
		{"array", `[{"a":1}]`, "an array, not a JSON object"},
		{"string", `"deviceType"`, "a string, not a JSON object"},
		{"number", `42`, "a number, not a JSON object"},
		{"bool", `true`, "a boolean, not a JSON object"},
		{"two objects", `{} {}`, "unexpected data after the object"},
		{"trailing garbage", `{"a":1}x`, "unexpected data after the object"},
		{"truncated", `{"deviceType":"raspberrypi3"`, "config.json"},
		{"trailing comma", `{"a":1,}`, "config.json"},
		{"single quotes", `{'a':1}`, "config.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.in))
			if err == nil {
				t.Fatalf("ParseConfig(%q) succeeded", tc.in)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseConfigAcceptsSurroundingWhitespace(t *testing.T) {
	c, err := ParseConfig([]byte("\n {\"a\": 1}\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(c.Encode()); got != `{"a":1}` {
		t.Fatalf("got %s", got)
	}
}

func TestNumbersSurvive(t *testing.T) {
	literals := []string{
		"123456789012345678901234567890", // beyond int64 and float64 precision
		"18446744073709551617",
		"1.50", "1E+3", "-0", "-2.5e-10", "0.1000000000000000055511151231257827",
	}
	for _, lit := range literals {
		c, err := ParseConfig([]byte(`{"n":` + lit + `,"unknownKey":{"deep":` + lit + `}}`))
		if err != nil {
			t.Fatalf("%s: %v", lit, err)
		}
		for _, key := range []string{"n", "unknownKey.deep"} {
			v, ok := c.Get(key)
			num, isNum := v.(json.Number)
			if !ok || !isNum || num.String() != lit {
				t.Errorf("Get(%s) = %#v, want json.Number %s", key, v, lit)
			}
		}
		want := `{"n":` + lit + `,"unknownKey":{"deep":` + lit + `}}`
		if got := string(c.Encode()); got != want {
			t.Errorf("Encode = %s, want %s", got, want)
		}
	}
}

func TestSetDotted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start string
		key   string
		value any
		want  string
	}{
		{"creates nested objects", `{}`, "os.sshKeys", []string{"ssh-ed25519 AAAA a@b"},
			`{"os":{"sshKeys":["ssh-ed25519 AAAA a@b"]}}`},
		{"creates three levels", `{"deviceType":"x"}`, "os.network.connectivity.uri", "https://example.org/check",
			`{"deviceType":"x","os":{"network":{"connectivity":{"uri":"https://example.org/check"}}}}`},
		{"keeps siblings and unknown keys", `{"os":{"udevRules":{"56":"r"},"futureKey":[1,2]},"z":1.0}`, "os.sshKeys", []string{},
			`{"os":{"futureKey":[1,2],"sshKeys":[],"udevRules":{"56":"r"}},"z":1.0}`},
		{"overwrites", `{"persistentLogging":false}`, "persistentLogging", true, `{"persistentLogging":true}`},
		{"replaces a subtree", `{"os":{"a":1}}`, "os", map[string]any{"b": 2}, `{"os":{"b":2}}`},
		{"json.Number keeps its text", `{}`, "appUpdatePollInterval", json.Number("900000.0"), `{"appUpdatePollInterval":900000.0}`},
		{"raw JSON", `{}`, "installer", json.RawMessage(`{"secureboot": true, "big": 1e400}`), `{"installer":{"big":1e400,"secureboot":true}}`},
		{"Go struct", `{}`, "os.network.wifi", struct {
			Random bool `json:"randomMacAddressScan"`
		}{true}, `{"os":{"network":{"wifi":{"randomMacAddressScan":true}}}}`},
		{"uint64", `{}`, "applicationId", uint64(18446744073709551615), `{"applicationId":18446744073709551615}`},
		{"null", `{"a":1}`, "a", nil, `{"a":null}`},
		{"html is not escaped", `{}`, "note", "<a&b>", `{"note":"<a&b>"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.start))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Set(tc.key, tc.value); err != nil {
				t.Fatalf("Set: %v", err)
			}
			if got := string(c.Encode()); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestSetOnZeroConfig(t *testing.T) {
	var c Config
	if got := string(c.Encode()); got != "{}" {
		t.Fatalf("zero Config encodes as %s", got)
	}
	if err := c.Set("os.sshKeys", []string{"k"}); err != nil {
		t.Fatal(err)
	}
	if got := string(c.Encode()); got != `{"os":{"sshKeys":["k"]}}` {
		t.Fatalf("got %s", got)
	}
}

func TestSetErrorsLeaveConfigUnchanged(t *testing.T) {
	const start = `{"os":{"sshKeys":["k"]},"persistentLogging":false}`
	for _, tc := range []struct {
		key   string
		value any
	}{
		{"persistentLogging.x", 1},   // through a bool
		{"os.sshKeys.first", "x"},    // through an array
		{"os.sshKeys.a.b.c", "x"},    // deeper through an array
		{"", 1},                      // empty key
		{"os..x", 1},                 // empty segment
		{".x", 1},                    // leading dot
		{"fn", func() {}},            // not marshalable
		{"ch", make(chan int)},       // not marshalable
		{"nan", json.Number("nope")}, // invalid number text
	} {
		c, err := ParseConfig([]byte(start))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Set(tc.key, tc.value); err == nil {
			t.Errorf("Set(%q) succeeded: %s", tc.key, c.Encode())
			continue
		}
		if got := string(c.Encode()); got != start {
			t.Errorf("Set(%q) failed but changed the config to %s", tc.key, got)
		}
	}
}

func TestGetAndDelete(t *testing.T) {
	c, err := ParseConfig([]byte(`{"os":{"sshKeys":["a","b"],"network":{"wifi":{"randomMacAddressScan":true}}},` +
		`"deviceApiKeys":{"api.balena-cloud.com":"k1"},"hostname":"h"}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := c.Get("os.network.wifi.randomMacAddressScan"); !ok || v != true {
		t.Fatalf("Get bool = %v %v", v, ok)
	}
	if s, ok := c.String("hostname"); !ok || s != "h" {
		t.Fatalf("String(hostname) = %q %v", s, ok)
	}
	if _, ok := c.String("os"); ok {
		t.Fatal("String on an object reported ok")
	}
	for _, missing := range []string{"nope", "os.nope", "hostname.x", "os.sshKeys.0", "deviceApiKeys.api.balena-cloud.com"} {
		if v, ok := c.Get(missing); ok {
			t.Errorf("Get(%q) = %v, want missing", missing, v)
		}
	}
	if v, ok := c.GetPath("deviceApiKeys", "api.balena-cloud.com"); !ok || v != "k1" {
		t.Fatalf("GetPath with a dotted key = %v %v", v, ok)
	}
	// Get returns copies: changing them leaves the config alone.
	v, _ := c.Get("os.sshKeys")
	v.([]any)[0] = "changed"
	if s, _ := c.Get("os.sshKeys"); s.([]any)[0] != "a" {
		t.Fatal("Get returned a slice aliasing the config")
	}
	if !c.Delete("os.network.wifi") || c.Delete("os.network.wifi") || c.Delete("hostname.x") {
		t.Fatal("Delete reported wrongly")
	}
	if got := string(c.Encode()); got != `{"deviceApiKeys":{"api.balena-cloud.com":"k1"},"hostname":"h","os":{"network":{},"sshKeys":["a","b"]}}` {
		t.Fatalf("after Delete: %s", got)
	}
	if got := c.Keys(); !reflect.DeepEqual(got, []string{"deviceApiKeys", "hostname", "os"}) {
		t.Fatalf("Keys = %v", got)
	}
}

func TestCloneIsDeep(t *testing.T) {
	c, err := ParseConfig([]byte(`{"os":{"sshKeys":["a"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Clone()
	if err := d.Set("os.sshKeys", []string{"b"}); err != nil {
		t.Fatal(err)
	}
	if got := string(c.Encode()); got != `{"os":{"sshKeys":["a"]}}` {
		t.Fatalf("original changed through clone: %s", got)
	}
}

func TestNewConfig(t *testing.T) {
	// The fresh-image documents of balenaos-image-format.md section 2.
	for _, tc := range []struct {
		slug string
		dev  bool
		want string
	}{
		{"raspberrypi3", false, `{"deviceType":"raspberrypi3","persistentLogging":false}`},
		{"genericx86-64-ext", true, `{"developmentMode":true,"deviceType":"genericx86-64-ext","persistentLogging":false}`},
	} {
		if got := string(NewConfig(tc.slug, tc.dev).Encode()); got != tc.want {
			t.Errorf("NewConfig(%s, %v) = %s, want %s", tc.slug, tc.dev, got, tc.want)
		}
	}
}

func TestConfigJSONInterfaces(t *testing.T) {
	type wrapper struct {
		Config Config `json:"config"`
	}
	var w wrapper
	if err := json.Unmarshal([]byte(`{"config":{"b":1.0,"a":"x"}}`), &w); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"config":{"a":"x","b":1.0}}` {
		t.Fatalf("got %s", out)
	}
	if err := json.Unmarshal([]byte(`{"config":[1]}`), &w); err == nil {
		t.Fatal("a non-object config unmarshalled")
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"a":1}`, `{"os":{"sshKeys":["k"]},"n":1e400}`, `[]`, `null`, `{"a":"\u2028\u0000"}`,
		`{"a":-0.0E-0}`, "{\"\xff\":1}", `{"a":{"b":{"c":[[[]]]}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		enc := c.Encode()
		if !json.Valid(enc) {
			t.Fatalf("Encode produced invalid JSON %q from %q", enc, data)
		}
		again, err := ParseConfig(enc)
		if err != nil {
			t.Fatalf("ParseConfig(Encode()) failed: %v (%q)", err, enc)
		}
		if enc2 := again.Encode(); !bytes.Equal(enc, enc2) {
			t.Fatalf("not a fixed point:\n%q\n%q", enc, enc2)
		}
		red := Redact(c).Encode()
		if !json.Valid(red) {
			t.Fatalf("Redact produced invalid JSON %q", red)
		}
	})
}
