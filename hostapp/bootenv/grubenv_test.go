package bootenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/hostos/hostos/tests/testtool"
)

func TestGrubEnvAgainstGrubEditenv(t *testing.T) {
	editenv := testtool.Need(t, "grub-editenv")
	dir := t.TempDir()
	cases := []map[string]string{
		{},
		{"bootcount": "0", "resin_root_part": "2", "upgrade_available": "0"},
		{"weird": "a\\b", "nl": "x\ny", "eq": "a=b"},
	}
	for i, vars := range cases {
		// ours → grub-editenv list
		b, err := EncodeGrubEnv(vars)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "ours")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.Command(editenv, p, "list").CombinedOutput(); err != nil {
			t.Fatalf("case %d: grub-editenv list: %v", i, err)
		}
		// grub-editenv set → ours, and byte equality
		g := filepath.Join(dir, "theirs")
		os.Remove(g)
		if out, err := exec.Command(editenv, g, "create").CombinedOutput(); err != nil {
			t.Fatalf("create: %v %s", err, out)
		}
		keys := make([]string, 0, len(vars))
		for k := range vars {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := vars[k]
			if out, err := exec.Command(editenv, g, "set", k+"="+v).CombinedOutput(); err != nil {
				t.Fatalf("set: %v %s", err, out)
			}
		}
		theirs, _ := os.ReadFile(g)
		got, err := DecodeGrubEnv(theirs)
		if err != nil {
			t.Fatalf("case %d: decode grub-editenv output: %v", i, err)
		}
		if !reflect.DeepEqual(got, vars) {
			t.Errorf("case %d: decoded %v, want %v", i, got, vars)
		}
		if string(theirs) != string(b) {
			t.Errorf("case %d: bytes differ from grub-editenv's:\n%q\n%q", i, b, theirs)
		}
	}
}

func TestGrubEnvTooLarge(t *testing.T) {
	big := map[string]string{"x": string(make([]byte, 1100))}
	if _, err := EncodeGrubEnv(big); err == nil {
		t.Fatal("want error for oversized environment")
	}
}

func FuzzDecodeGrubEnv(f *testing.F) {
	b, _ := EncodeGrubEnv(map[string]string{"a": "1"})
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		vars, err := DecodeGrubEnv(in)
		if err != nil {
			return
		}
		// A name runs up to the next '=' as GRUB reads it, so it never holds one; it may hold newlines
		// (GRUB's iterator reads them so too), which no writer produces and EncodeGrubEnv refuses.
		writable := true
		for name := range vars {
			if strings.Contains(name, "=") {
				t.Fatalf("decoded name %q holds '='", name)
			}
			if name == "" || strings.ContainsAny(name, "\n") {
				writable = false
			}
		}
		if _, err := EncodeGrubEnv(vars); writable && err != nil && !errors.Is(err, ErrGrubEnvTooLarge) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

// TestGrubEnvGolden reads what balenaOS's rollback-stop leaves (a grub-editenv block run through
// `sed "s#bootcount=.*#bootcount=0 #g"`: 1025 bytes) and edits it into what grub-editenv set makes of it.
func TestGrubEnvGolden(t *testing.T) {
	in, err := os.ReadFile("testdata/balena-rollback-stop.grubenv")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/balena-rollback-stop.switched.grubenv")
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseGrubEnv(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Map(); !reflect.DeepEqual(got, map[string]string{"bootcount": "0 ", "resin_root_part": "3", "upgrade_available": "0"}) {
		t.Errorf("decoded %q", got)
	}
	for _, kv := range [][2]string{{"bootcount", "1"}, {"resin_root_part", "2"}, {"upgrade_available", "1"}} {
		if err := e.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.Bytes(); string(got) != string(want) {
		t.Errorf("edited block differs from grub-editenv's:\n%q\n%q", got, want)
	}
}

// TestGrubEnvEditsLikeGrubEditenv edits blocks of several sizes and shapes with grub-editenv set and with
// GrubEnv.Set, one variable at a time, and wants the same bytes, the same errors, and grub-editenv list to
// read what Map reads.
func TestGrubEnvEditsLikeGrubEditenv(t *testing.T) {
	editenv := testtool.Need(t, "grub-editenv")
	dir := t.TempDir()
	fresh := NewGrubEnv().Bytes()
	balena, err := os.ReadFile("testdata/balena-rollback-stop.grubenv")
	if err != nil {
		t.Fatal(err)
	}
	pad := func(s string, n int) []byte {
		b := []byte(s)
		for len(b) < n {
			b = append(b, '#')
		}
		return b
	}
	starts := map[string][]byte{
		"fresh":          fresh,
		"balena 1025":    balena,
		"comments":       pad(grubEnvHeader+"x=1\n#note\nbootcount=7\n", 300),
		"escapes":        pad(grubEnvHeader+"a=b\\\nc\nd=e\\\\\n", 200),
		"odd names":      pad(grubEnvHeader+"foo\nbar=1\n=x\nbootcount=2\n", 128),
		"duplicates":     pad(grubEnvHeader+"bootcount=1\nbootcount=2\n", 128),
		"full":           []byte(grubEnvHeader + "bootcount=0\n"),
		"truncated last": pad(grubEnvHeader+"bootcount=0\nresin", 100),
		"big":            pad(grubEnvHeader, 4096),
	}
	sets := [][2]string{{"bootcount", "1"}, {"resin_root_part", "3"}, {"bootcount", "12345"}, {"upgrade_available", "1"},
		{"x", "multi\nline\\"}, {"bootcount", "0"}, {"long", strings.Repeat("v", 60)}}
	for name, start := range starts {
		p := filepath.Join(dir, "env")
		if err := os.WriteFile(p, start, 0o644); err != nil {
			t.Fatal(err)
		}
		e, err := ParseGrubEnv(start)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, kv := range sets {
			out, gerr := exec.Command(editenv, p, "set", kv[0]+"="+kv[1]).CombinedOutput()
			err := e.Set(kv[0], kv[1])
			if (gerr == nil) != (err == nil) {
				t.Errorf("%s: set %s: grub-editenv %v %s, ours %v", name, kv[0], gerr, out, err)
				break
			}
			theirs, rerr := os.ReadFile(p)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if string(theirs) != string(e.Bytes()) {
				t.Errorf("%s: after set %s:\nours   %q\ntheirs %q", name, kv[0], e.Bytes(), theirs)
				break
			}
		}
		list, err := exec.Command(editenv, p, "list").Output()
		if err != nil {
			t.Fatalf("%s: grub-editenv list: %v", name, err)
		}
		var ours strings.Builder
		for _, v := range e.vars() {
			ours.WriteString(v.name + "=" + v.value + "\n")
		}
		if ours.String() != string(list) {
			t.Errorf("%s: grub-editenv list\n%q\nours\n%q", name, list, ours.String())
		}
	}
}

// FuzzGrubEnv: every block that parses can be edited, or the edit fails with an error, and an edit keeps the
// size and reads back.
func FuzzGrubEnv(f *testing.F) {
	f.Add([]byte(grubEnvHeader+"bootcount=0 \n####"), "bootcount", "1")
	f.Add(NewGrubEnv().Bytes(), "resin_root_part", "2")
	f.Add([]byte(grubEnvHeader+"a=b\\\nc\n#x\n=y\nfoo\n"), "a", "\\\n")
	f.Fuzz(func(t *testing.T, in []byte, name, value string) {
		e, err := ParseGrubEnv(in)
		if err != nil {
			return
		}
		_ = e.Map()
		if err := e.Set(name, value); err != nil {
			return
		}
		out := e.Bytes()
		if len(out) != len(in) {
			t.Fatalf("size %d, was %d", len(out), len(in))
		}
		again, err := ParseGrubEnv(out)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := again.Get(name); !ok || v != value {
			// Another variable whose name runs over a newline into this one can shadow it, and an empty
			// line before it makes its name, as GRUB's iterator reads it, start with that newline: GRUB's
			// set finds the line, its iterator the longer name.
			for _, gv := range again.vars() {
				if (gv.name == name || strings.HasSuffix(gv.name, "\n"+name)) && gv.value == value {
					return
				}
			}
			t.Fatalf("%q: got %q, %v, want %q", name, v, ok, value)
		}
	})
}
