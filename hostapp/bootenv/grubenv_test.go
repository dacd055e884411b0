package bootenv

import (
	"github.com/hostos/hostos/tests/testtool"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
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
		if _, err := EncodeGrubEnv(vars); err != nil && err != ErrGrubEnvTooLarge {
			// Names decoded from a block never contain '=' or newlines.
			t.Fatalf("re-encode: %v", err)
		}
	})
}
