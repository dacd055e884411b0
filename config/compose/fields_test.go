package compose

import (
	"fmt"
	"strings"
	"testing"
)

// TestSchemaDecode: the shared field loop skips extension keys (unless closed), keeps asWritten fields
// even when null, leaves out what a decoder drops, and names the field at fault.
func TestSchemaDecode(t *testing.T) {
	s := schema{notField: "a field of a thing", asWritten: map[string]bool{"raw": true}, field: func(k string) decoder {
		switch k {
		case "name":
			return nonEmptyString
		case "on":
			return trueBool
		case "sub":
			return schema{notField: "a field of a sub", field: func(k string) decoder {
				if k == "n" {
					return nonZeroInt
				}
				return nil
			}}.mapping
		}
		return nil
	}}
	for _, tc := range []struct {
		in         map[string]any
		closed     bool
		want, fail string
	}{
		{in: map[string]any{"name": "a", "on": false, "raw": nil, "x-ext": 1}, want: "name=a raw=<nil>"},
		{in: map[string]any{"name": "", "on": "yes"}, want: "on=true"},
		{in: map[string]any{"x-ext": 1}, closed: true, fail: "x-ext is not a field of a thing"},
		{in: map[string]any{"bogus": 1, "name": 2}, fail: "bogus is not a field of a thing"},
		{in: map[string]any{"name": 2}, fail: "name: a number is not a string"},
		{in: map[string]any{"sub": map[string]any{"n": "x"}}, fail: `sub.n: "x" is not an integer`},
		{in: map[string]any{"sub": map[string]any{"m": 1}}, fail: "sub: m is not a field of a sub"},
		{in: map[string]any{"sub": 1}, fail: "sub: a number is not a mapping"},
	} {
		s.closed = tc.closed
		out := map[string]any{}
		err := s.decode(tc.in, out)
		if tc.fail != "" {
			if err == nil || err.Error() != tc.fail {
				t.Errorf("%v: error %v, want %q", tc.in, err, tc.fail)
			}
			continue
		}
		var got []string
		for _, k := range sortedKeys(out) {
			got = append(got, k+"="+fmt.Sprint(out[k]))
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("%v: %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

// TestFieldPaths: within a service, volume or network a field and its value's mistake part with a colon;
// fields of named entries and of ipam's pools join with a dot.
func TestFieldPaths(t *testing.T) {
	svc := "services:\n  app:\n    image: x\n"
	for _, tc := range []struct{ doc, want string }{
		{svc + "    healthcheck:\n      interval: 5\n", "docker-compose.yml:4: service app: healthcheck: interval: a number is not a duration string"},
		{svc + "    depends_on:\n      db: {condition: nope}\n", `docker-compose.yml:4: service app: depends_on: db.condition: "nope" is not a condition`},
		{svc + "    depends_on:\n      db: {bogus: 1}\n", "docker-compose.yml:4: service app: depends_on: db: bogus is not a field of depends_on"},
		{svc + "    networks:\n      n: {aliases: a}\n", "docker-compose.yml:4: service app: networks: n.aliases: a string is not a list of strings"},
		{svc + "    volumes:\n      - {type: volume, volume: {nocopy: maybe}}\n", `docker-compose.yml:4: service app: volumes: volume.nocopy: "maybe" is not a boolean`},
		{svc + "    env_file:\n      - {path: a, x-y: 1}\n", "docker-compose.yml:4: service app: env_file: x-y is not a field of env_file"},
		{"networks:\n  n:\n    ipam:\n      config:\n        - subnet: 1\n" + svc, "docker-compose.yml:3: network n: ipam: config.subnet: a number is not a string"},
		{"networks:\n  n:\n    ipam:\n      config:\n        - bogus: 1\n" + svc, "docker-compose.yml:3: network n: ipam: config: bogus is not a field of an address pool"},
	} {
		_, _, err := Parse([]byte(tc.doc), WithDir(t.TempDir()))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: error %v, want %q", tc.doc, err, tc.want)
		}
	}
}
