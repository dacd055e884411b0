package bootenv

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hostos/hostos/tests/testtool"
)

func TestDecodeUEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want map[string]string
		err  string // part of the error; "" for none
	}{
		{name: "empty", in: "", want: map[string]string{}},
		{name: "balena uEnv", in: "resin_root_part=2\nupgrade_available=1\n",
			want: map[string]string{"resin_root_part": "2", "upgrade_available": "1"}},
		{name: "bootcount without final newline", in: "bootcount=3", want: map[string]string{"bootcount": "3"}},
		{name: "blank lines and comments", in: "\n# written by hostos\n\n  # indented comment\nbootcount=0\n\n",
			want: map[string]string{"bootcount": "0"}},
		{name: "blanks before name", in: " \tbootcount=1\n", want: map[string]string{"bootcount": "1"}},
		{name: "blanks in value kept", in: "bootargs= console=ttyS0 quiet \n", want: map[string]string{"bootargs": " console=ttyS0 quiet "}},
		{name: "equals in value", in: "a=b=c\n", want: map[string]string{"a": "b=c"}},
		{name: "empty value", in: "a=\n", want: map[string]string{"a": ""}},
		{name: "last wins", in: "a=1\na=2\n", want: map[string]string{"a": "2"}},
		{name: "escaped backslash", in: `a=x\\y` + "\n", want: map[string]string{"a": `x\y`}},
		{name: "escape drops the backslash", in: `a=x\y` + "\n", want: map[string]string{"a": "xy"}},
		{name: "trailing backslash at end of data", in: `a=x\`, want: map[string]string{"a": `x\`}},
		{name: "escaped newline continues", in: "a=x\\\ny\nb=1\n", want: map[string]string{"a": "x\ny", "b": "1"}},
		{name: "CR stays", in: "a=1\r\n", want: map[string]string{"a": "1\r"}},
		{name: "NUL ends the text", in: "a=1\n\x00b=2\n", want: map[string]string{"a": "1"}},
		{name: "NUL padding after a value", in: "a=1\x00\x00\x00", want: map[string]string{"a": "1"}},
		{name: "dots and dashes", in: "fdt.file-name_2=x\n", want: map[string]string{"fdt.file-name_2": "x"}},
		{name: "no equals", in: "a=1\nbootcount\n", err: "line 2"},
		{name: "no equals after continued line", in: "a=x\\\ny\nbad line\n", err: "line 3"},
		{name: "empty name", in: "=1\n", err: "line 1"},
		{name: "space in name", in: "a b=1\n", err: "bad variable name"},
		{name: "space before equals", in: "a =1\n", err: "bad variable name"},
	} {
		got, err := DecodeUEnv([]byte(tc.in))
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want one naming %q", tc.name, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !reflect.DeepEqual(got, tc.want):
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestEncodeUEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   map[string]string
		want string
	}{
		{"empty", map[string]string{}, ""},
		{"balena uEnv", map[string]string{"upgrade_available": "1", "resin_root_part": FormatRootPart(10)}, "resin_root_part=a\nupgrade_available=1\n"},
		{"bootcount", map[string]string{"bootcount": "2"}, "bootcount=2\n"},
		{"backslash escaped", map[string]string{"a": `x\y`}, `a=x\\y` + "\n"},
		{"empty value", map[string]string{"a": ""}, "a=\n"},
		{"invalid left out", map[string]string{"a": "1", "b c": "2", "d": "x\ny", "e": "\x00"}, "a=1\n"},
	} {
		if got := string(EncodeUEnv(tc.in)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestValidateUEnv(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		ok   bool
	}{
		{map[string]string{}, true},
		{map[string]string{"resin_root_part": "a", "os_bc_lim": "3", "x.y-z": "with spaces = and # and \\ and \r"}, true},
		{map[string]string{"": "1"}, false},
		{map[string]string{"a=b": "1"}, false},
		{map[string]string{"#a": "1"}, false},
		{map[string]string{"a b": "1"}, false},
		{map[string]string{"ä": "1"}, false},
		{map[string]string{"a": "1\n"}, false},
		{map[string]string{"a": "1\x00"}, false},
	} {
		if err := ValidateUEnv(tc.vars); (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok %v", tc.vars, err, tc.ok)
		}
	}
}

func TestRootPart(t *testing.T) {
	for n, s := range map[int]string{1: "1", 2: "2", 9: "9", 10: "a", 15: "f", 16: "10", 37: "25", 255: "ff"} {
		if got := FormatRootPart(n); got != s {
			t.Errorf("FormatRootPart(%d) = %q, want %q", n, got, s)
		}
		if got, err := ParseRootPart(s); err != nil || got != n {
			t.Errorf("ParseRootPart(%q) = %d, %v, want %d", s, got, err, n)
		}
	}
	for s, n := range map[string]int{"A": 10, "0xa": 10, "0XA": 10, "0x10": 16, "02": 2, "0x2": 2} {
		if got, err := ParseRootPart(s); err != nil || got != n {
			t.Errorf("ParseRootPart(%q) = %d, %v, want %d", s, got, err, n)
		}
	}
	for _, s := range []string{"", "0", "0x", "0x0", "g", "-1", "+2", " 2", "2 ", "2\r", "1_0", "0o7", "10000", "0x+1"} {
		if n, err := ParseRootPart(s); err == nil {
			t.Errorf("ParseRootPart(%q) = %d, want error", s, n)
		}
	}
}

// TestUEnvAgainstFwPrintenv has libubootenv read our text as a default environment and print it, and
// reads its output back. libubootenv neither unescapes backslashes nor keeps empty values, so the values
// here have neither.
func TestUEnvAgainstFwPrintenv(t *testing.T) {
	printenv := testtool.Need(t, "fw_printenv")
	dir := t.TempDir()
	env, cfg, txt := filepath.Join(dir, "env.bin"), filepath.Join(dir, "fw_env.config"), filepath.Join(dir, "uEnv.txt")
	if err := os.WriteFile(env, make([]byte, 0x4000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(env+" 0x0 0x4000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, vars := range []map[string]string{
		{"resin_root_part": FormatRootPart(3), "upgrade_available": "1"},
		{"bootcount": "0"},
		{"bootargs": "console=ttyS0,115200 root=LABEL=resin-rootA quiet", "x.y-z_1": "a=b # c"},
	} {
		if err := os.WriteFile(txt, EncodeUEnv(vars), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(printenv, "-c", cfg, "-f", txt).Output()
		if err != nil {
			t.Fatalf("fw_printenv: %v", err)
		}
		got, err := DecodeUEnv(out)
		if err != nil {
			t.Fatalf("decode fw_printenv output %q: %v", out, err)
		}
		if !maps.Equal(got, vars) {
			t.Errorf("fw_printenv reads %q, want %q", got, vars)
		}
	}
}

func FuzzUEnv(f *testing.F) {
	f.Add([]byte("resin_root_part=a\nupgrade_available=1\n"), "bootcount", "3")
	f.Add([]byte("# c\n a=x\\\\y\\\nz\n\x00junk"), "a.b", `x\`)
	f.Add([]byte("a=1\r\nb\n"), "", "")
	f.Fuzz(func(t *testing.T, data []byte, name, value string) {
		// Whatever decodes and validates encodes to text that decodes to the same variables.
		if vars, err := DecodeUEnv(data); err == nil && ValidateUEnv(vars) == nil {
			again, err := DecodeUEnv(EncodeUEnv(vars))
			if err != nil || !maps.Equal(again, vars) {
				t.Fatalf("round trip of %q: %q, %v", vars, again, err)
			}
		}
		// A variable is written exactly when it validates, and reads back unchanged.
		vars := map[string]string{name: value}
		got, err := DecodeUEnv(EncodeUEnv(vars))
		if err != nil {
			t.Fatalf("decode encoded %q: %v", vars, err)
		}
		if ValidateUEnv(vars) == nil && !maps.Equal(got, vars) || ValidateUEnv(vars) != nil && len(got) != 0 {
			t.Fatalf("%q encodes to %q, decodes to %q", vars, EncodeUEnv(vars), got)
		}
	})
}
