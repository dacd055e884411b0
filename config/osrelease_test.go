package config

import (
	"bytes"
	"github.com/hostos/hostos/tests/testtool"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"unicode"
)

// sourceWithShell sources file with sh (set -a exports every assignment) and returns the variables it
// defined, read from env -0 (NUL-separated, machine-readable).
func sourceWithShell(t *testing.T, file string) map[string]string {
	t.Helper()
	sh := testtool.Need(t, "sh")
	env := testtool.Need(t, "env")
	cmd := exec.Command(env, "-i", sh, "-c", `set -a; . "$1"; exec env -0`, "sh", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh: %v: %s", err, stderr.Bytes())
	}
	vars := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "PWD", "OLDPWD", "SHLVL", "_":
			continue // the shell's own
		}
		vars[k] = v
	}
	return vars
}

// TestParseOSReleaseAgreesWithShell parses a file that uses every quoting form and compares with what
// sh makes of it.
func TestParseOSReleaseAgreesWithShell(t *testing.T) {
	src := `# balenaOS os-release, with every quoting form
NAME="balenaOS"
ID=balena-os
VERSION="6.0.13+rev1"
VERSION_ID=6.0.13+rev1
PRETTY_NAME='balenaOS 6.0.13 (it'\''s fine)'
ESCAPED="a \"quoted\" \$HOME \\ back\` + "`tick\\`" + `"
UNQUOTED=foo\ bar\"baz
MIXED=abc"def"'ghi'
EMPTY=
EMPTY_QUOTED=""
   INDENTED="x"
LITERAL_BACKSLASH="a\b\n"
SINGLE='$HOME \n "'
UTF8="größe ✓ 😀"
TRAILING="x"   
LAST=one

LAST=two
VARIANT_ID=prod
`
	file := filepath.Join(t.TempDir(), "os-release")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	want := sourceWithShell(t, file)
	got := ParseOSRelease([]byte(src))
	if !reflect.DeepEqual(got, want) {
		for k := range union(got, want) {
			if got[k] != want[k] {
				t.Errorf("%s: got %q, sh says %q", k, got[k], want[k])
			}
		}
		t.Fatalf("ParseOSRelease disagrees with sh")
	}
	if len(got) != 17 {
		t.Fatalf("expected the file's 17 distinct variables, got %d", len(got))
	}
}

func union(a, b map[string]string) map[string]bool {
	u := map[string]bool{}
	for k := range a {
		u[k] = true
	}
	for k := range b {
		u[k] = true
	}
	return u
}

func TestParseOSReleaseSkipsMalformed(t *testing.T) {
	got := ParseOSRelease([]byte("GOOD=1\n1BAD=x\nNO_EQUALS\nOPEN=\"unterminated\nOPEN2='x\n-X=1\nA B=1\r\nCRLF=\"y\"\r\n"))
	want := map[string]string{"GOOD": "1", "CRLF": "y"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
}

// TestOSReleaseSourcedByShell generates balenaOS's os-release plus hostile values and checks sh reads
// back every value exactly, as does ParseOSRelease.
func TestOSReleaseSourcedByShell(t *testing.T) {
	fields := Release{
		Version:        "6.0.13+rev1",
		Machine:        "genericx86-64-ext",
		Slug:           "genericx86-64-ext",
		Development:    true,
		DistroCodename: "scarthgap",
		BoardRev:       "abc1234",
		MetaBalenaRev:  "def5678",
	}.Fields()
	fields = append(fields,
		OSReleaseField{"HOSTILE", `$(touch /tmp/pwned) "q" 'a' \ ` + "`id`" + ` ${X} ;|&<> #`},
		OSReleaseField{"UNICODE", "größe ✓ 😀"},
		OSReleaseField{"EMPTY", ""},
	)
	data, err := OSRelease(fields...)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "os-release")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sh := sourceWithShell(t, file)
	parsed := ParseOSRelease(data)
	if len(sh) != len(fields) || len(parsed) != len(fields) {
		t.Fatalf("%d fields written, sh read %d, ParseOSRelease %d:\n%s", len(fields), len(sh), len(parsed), data)
	}
	for _, f := range fields {
		if sh[f.Key] != f.Value {
			t.Errorf("sh reads %s as %q, want %q", f.Key, sh[f.Key], f.Value)
		}
		if parsed[f.Key] != f.Value {
			t.Errorf("ParseOSRelease reads %s as %q, want %q", f.Key, parsed[f.Key], f.Value)
		}
	}
	for k, v := range map[string]string{"NAME": "balenaOS", "ID": "balena-os", "PRETTY_NAME": "balenaOS 6.0.13+rev1",
		"VARIANT": "Development", "VARIANT_ID": "dev", "META_BALENA_VERSION": "6.0.13+rev1", "MACHINE": "genericx86-64-ext"} {
		if parsed[k] != v {
			t.Errorf("%s = %q, want %q", k, parsed[k], v)
		}
	}
	if !strings.HasPrefix(string(data), "ID=\"balena-os\"\nNAME=\"balenaOS\"\n") {
		t.Errorf("unexpected start:\n%s", data)
	}
}

func TestReleaseProductionDefaults(t *testing.T) {
	got := map[string]string{}
	for _, f := range (Release{Version: "5.1.0", MetaBalenaVersion: "5.1.0", Machine: "raspberrypi3"}).Fields() {
		got[f.Key] = f.Value
	}
	if got["VARIANT"] != "Production" || got["VARIANT_ID"] != "prod" {
		t.Errorf("variant %q/%q", got["VARIANT"], got["VARIANT_ID"])
	}
	for _, absent := range []string{"SLUG", "DISTRO_CODENAME", "BALENA_BOARD_REV", "META_BALENA_REV"} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s written although empty", absent)
		}
	}
}

func TestOSReleaseRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields []OSReleaseField
	}{
		{"bad key", []OSReleaseField{{"1X", "v"}}},
		{"key with space", []OSReleaseField{{"A B", "v"}}},
		{"empty key", []OSReleaseField{{"", "v"}}},
		{"duplicate", []OSReleaseField{{"A", "1"}, {"A", "2"}}},
		{"newline", []OSReleaseField{{"A", "x\ny"}}},
		{"nul", []OSReleaseField{{"A", "x\x00"}}},
	} {
		if _, err := OSRelease(tc.fields...); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func FuzzParseOSRelease(f *testing.F) {
	for _, seed := range []string{
		"NAME=\"balenaOS\"\nID=balena-os\n", "A='x'\"y\"z\\ w\n", "A=\"unterminated\n", "#c\n\nB=\\\n", "C=\"\\$\\`\\\\\\\"\"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := ParseOSRelease(data)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var fields []OSReleaseField
		for _, k := range keys {
			if strings.IndexFunc(m[k], unicode.IsControl) >= 0 {
				continue
			}
			fields = append(fields, OSReleaseField{k, m[k]})
		}
		out, err := OSRelease(fields...)
		if err != nil {
			t.Fatalf("OSRelease(%q): %v", fields, err)
		}
		back := ParseOSRelease(out)
		for _, f := range fields {
			if back[f.Key] != f.Value {
				t.Fatalf("%s: wrote %q, read back %q\n%s", f.Key, f.Value, back[f.Key], out)
			}
		}
	})
}

func TestOSVersion(t *testing.T) {
	for in, want := range map[string]string{
		"NAME=balenaOS\nVERSION_ID=2.113.4\nVERSION=\"2.113.4+rev1\"\n": "2.113.4",
		"VERSION=\"2.50.1+rev2\"\n":                                     "2.50.1+rev2",
		"NAME=x\n":                                                      "",
	} {
		if got := OSVersion([]byte(in)); got != want {
			t.Errorf("OSVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
