package health

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const example = `# /etc/hostos/health.toml — all checks must pass to commit
[[check]]
name = "system-running"
command = ["/bin/systemctl", "is-system-running", "--wait"]
count = 1          # consecutive passes needed (default 1)
interval = "10s"   # wait between attempts (default "10s")
timeout = "120s"   # per attempt
retries = 3        # failed attempts tolerated

[[check]]
name = "engine"
command = ["/usr/bin/balena", "info"]
`

func TestParse(t *testing.T) {
	got, err := Parse([]byte(example), "health.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Checks{
		{Name: "system-running", Command: []string{"/bin/systemctl", "is-system-running", "--wait"}, Count: 1,
			Interval: 10 * time.Second, Timeout: 120 * time.Second, Retries: 3},
		{Name: "engine", Command: []string{"/usr/bin/balena", "info"}, Count: DefaultCount,
			Interval: DefaultInterval, Timeout: DefaultTimeout, Retries: DefaultRetries},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestParseEmptyIsHealthy(t *testing.T) {
	for _, doc := range []string{"", "# nothing to check\n"} {
		cs, err := Parse([]byte(doc), "health.toml")
		if err != nil || len(cs) != 0 {
			t.Fatalf("Parse(%q) = %v, %v; want no checks", doc, cs, err)
		}
	}
	if len(Default()) != 0 {
		t.Fatalf("Default() = %v, want empty", Default())
	}
}

func TestParseErrors(t *testing.T) {
	const head = "[[check]]\nname = \"a\"\ncommand = [\"/bin/true\"]\n" // lines 1-3
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"unknown key", head + "retry = 3\n", `health.toml:4: unknown key "check.retry"`},
		{"unknown top-level key", "checks = 1\n" + head, `health.toml:1: unknown key "checks"`},
		{"bad duration", head + "count = 2\ninterval = \"10 seconds\"\n", `health.toml:5: check "a": key "interval": "10 seconds" is not a duration`},
		{"unitless duration", head + "timeout = \"30\"\n", `health.toml:4: check "a": key "timeout"`},
		{"zero timeout", head + "timeout = \"0s\"\n", `health.toml:4: check "a": key "timeout": 0s, need more than 0`},
		{"negative interval", head + "interval = \"-1s\"\n", `health.toml:4: check "a": key "interval"`},
		{"empty command", "[[check]]\nname = \"a\"\ncommand = []\n", `health.toml:3: check "a": key "command": empty command`},
		{"empty program", "[[check]]\nname = \"a\"\ncommand = [\"\", \"x\"]\n", `health.toml:3: check "a": key "command": empty command`},
		{"missing command", "[[check]]\nname = \"a\"\n", `health.toml:1: check "a": key "command": empty command`},
		{"count 0", head + "count = 0\n", `health.toml:4: check "a": key "count": 0, need at least 1`},
		{"negative retries", head + "retries = -1\n", `health.toml:4: check "a": key "retries": -1 is negative`},
		{"count of wrong type", head + "count = \"2\"\n", `health.toml:4: key "check.count"`},
		{"missing name", "[[check]]\ncommand = [\"/bin/true\"]\n", `health.toml:1: check without a name`},
		{"duplicate name", head + "\n" + head, `health.toml:6: check "a": name used twice`},
		{"second check", head + "\n[[check]]\nname = \"b\"\ncommand = [\"/bin/true\"]\ncount = 0\n", `health.toml:8: check "b": key "count"`},
		{"syntax", "[[check]\n", `health.toml:1:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := Parse([]byte(tc.doc), "health.toml")
			if err == nil {
				t.Fatalf("no error; parsed %+v", cs)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte("[[check]]\nname = \"a\"\ncommand = [\"x\"]\ncount = 0\n"))
	f.Add([]byte("check = [{name = \"a\", command = [\"x\"], interval = \"1s\"}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := Parse(data, "fuzz.toml")
		if err != nil {
			return
		}
		for _, c := range cs {
			if key, err := c.validate(); err != nil {
				t.Fatalf("Parse accepted an invalid check (key %s): %v", key, err)
			}
		}
	})
}
