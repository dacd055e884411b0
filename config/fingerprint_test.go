package config

import (
	"bytes"
	"crypto/md5"
	"errors"
	"github.com/hostos/hostos/tests/testtool"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// bootTree writes a boot-partition-like tree and returns its root. It includes what balena's rule
// must leave out (config.json at any depth, a stale fingerprint, a symlink) and names that exercise
// sorting and md5sum's escaping.
func bootTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(1))
	blob := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	files := map[string][]byte{
		"balena-image":                           []byte("DO NOT REMOVE THIS FILE\n"),
		"image-version-info":                     []byte("balena-image-genericx86-64-ext-20240101\n"),
		"os-release":                             []byte("ID=\"balena-os\"\nNAME=\"balenaOS\"\n"),
		"device-type.json":                       []byte(`{"slug":"genericx86-64-ext"}`),
		"config.json":                            []byte(`{"deviceType":"genericx86-64-ext","persistentLogging":false}`),
		"nested/config.json":                     []byte(`{}`),
		FingerprintName:                          []byte("stale\n"),
		"splash/balena-logo.png":                 blob(4096),
		"system-connections/resin-sample.ignore": []byte("[connection]\nid=resin-sample\n"),
		"EFI/BOOT/BOOTX64.EFI":                   blob(70000),
		"EFI/BOOT/grub.cfg":                      []byte("set timeout=0\n"),
		"grub/grubenv":                           bytes.Repeat([]byte("#"), 1024),
		"Upper.TXT":                              []byte("U"),
		"lower.txt":                              []byte("l"),
		"a b.txt":                                []byte("space"),
		"a-b":                                    []byte("dash"),
		"a_b":                                    []byte("underscore"),
		"a.b":                                    []byte("dot"),
		"ü.txt":                                  []byte("umlaut"),
		"empty":                                  nil,
		`back\slash`:                             []byte("escaped by md5sum"),
		"new\nline":                              []byte("escaped too"),
	}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("os-release", filepath.Join(dir, "link-to-os-release")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sumTree computes the MD5 of every regular file under dir, keyed by root-relative path.
func sumTree(t *testing.T, dir string) map[string][16]byte {
	t.Helper()
	sums := map[string][16]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		sums[filepath.ToSlash(rel)] = md5.Sum(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

func fileSums(m map[string][16]byte) []FileSum {
	var out []FileSum
	for p, s := range m {
		out = append(out, FileSum{Path: p, MD5: s})
	}
	return out
}

// TestFingerprintMatchesMetaBalena runs meta-balena's own pipeline (image-balena.bbclass, sorted in
// the C locale) on a real tree and requires Fingerprint to produce the same bytes.
func TestFingerprintMatchesMetaBalena(t *testing.T) {
	sh := testtool.Need(t, "sh")
	for _, tool := range []string{"find", "md5sum", "sed", "sort"} {
		testtool.Need(t, tool)
	}
	dir := bootTree(t)
	script := `find "$1" -xdev -type f ! -name balenaos.fingerprint ! -name config.json -exec md5sum {} \; | ` +
		`sed "s#$1##g" | LC_ALL=C sort -k2`
	cmd := exec.Command(sh, "-c", script, "sh", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("balena pipeline: %v: %s", err, stderr.Bytes())
	}
	sums := sumTree(t, dir)
	got := Fingerprint(fileSums(sums))
	if !bytes.Equal(got, want) {
		t.Fatalf("Fingerprint differs from meta-balena's pipeline:\n--- got\n%s--- want\n%s", got, want)
	}
	// The tree holds three files the rule leaves out; everything else is listed.
	if lines := bytes.Count(got, []byte("\n")); lines != len(sums)-3 {
		t.Fatalf("%d lines for %d files:\n%s", lines, len(sums), got)
	}
}

// TestFingerprintMD5SumCheck writes the fingerprint into the tree and lets md5sum -c judge it, then
// breaks the tree and checks both md5sum and VerifyFingerprint notice.
func TestFingerprintMD5SumCheck(t *testing.T) {
	md5sum := testtool.Need(t, "md5sum")
	sed := testtool.Need(t, "sed")
	dir := bootTree(t)
	sums := sumTree(t, dir)
	fp := Fingerprint(fileSums(sums))
	if err := os.WriteFile(filepath.Join(dir, FingerprintName), fp, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func() error {
		// The recipe of Fingerprint's doc comment: drop the leading "/" and let md5sum check.
		strip := exec.Command(sed, `s#^\(\\\?[0-9a-f]\{32\}\)  /#\1  #`, FingerprintName)
		strip.Dir = dir
		rel, err := strip.Output()
		if err != nil {
			t.Fatalf("sed: %v", err)
		}
		cmd := exec.Command(md5sum, "--strict", "--quiet", "-c", "-")
		cmd.Dir = dir
		cmd.Stdin = bytes.NewReader(rel)
		return cmd.Run()
	}
	if err := check(); err != nil {
		t.Fatalf("md5sum -c rejects a fresh fingerprint: %v\n%s", err, fp)
	}
	if err := VerifyFingerprint(fp, sums); err != nil {
		t.Fatalf("VerifyFingerprint on the same files: %v", err)
	}

	// config.json changes (as on every device) without breaking the fingerprint.
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"changed":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := check(); err != nil {
		t.Fatalf("md5sum -c after editing config.json: %v", err)
	}

	// Modify one file and delete another.
	if err := os.WriteFile(filepath.Join(dir, "EFI", "BOOT", "grub.cfg"), []byte("set timeout=5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "splash", "balena-logo.png")); err != nil {
		t.Fatal(err)
	}
	var exitErr *exec.ExitError
	if err := check(); !errors.As(err, &exitErr) {
		t.Fatalf("md5sum -c accepted a broken tree: %v", err)
	}
	err := VerifyFingerprint(fp, sumTree(t, dir))
	var mm *FingerprintMismatch
	if !errors.As(err, &mm) || !errors.Is(err, ErrFingerprintMismatch) {
		t.Fatalf("VerifyFingerprint: %v", err)
	}
	if !reflect.DeepEqual(mm.Modified, []string{"EFI/BOOT/grub.cfg"}) || !reflect.DeepEqual(mm.Missing, []string{"splash/balena-logo.png"}) {
		t.Fatalf("mismatch %+v", mm)
	}
	if !strings.Contains(err.Error(), "EFI/BOOT/grub.cfg") || !strings.Contains(err.Error(), "splash/balena-logo.png") {
		t.Fatalf("error does not name the files: %v", err)
	}
}

func TestParseFingerprintForms(t *testing.T) {
	const sum = "d41d8cd98f00b204e9800998ecf8427e"
	in := sum + "  /balena-image\n" +
		sum + "  splash/balena-logo.png\n" +
		sum + "  ./EFI/BOOT/grub.cfg\n" +
		sum + " *binary/mode\n" +
		"\n" +
		`\` + sum + `  /back\\slash\nnew` + "\n"
	got, err := ParseFingerprint([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range got {
		if f.MD5 != md5.Sum(nil) {
			t.Errorf("%s: wrong sum %x", f.Path, f.MD5)
		}
		paths = append(paths, f.Path)
	}
	want := []string{"balena-image", "splash/balena-logo.png", "EFI/BOOT/grub.cfg", "binary/mode", "back\\slash\nnew"}
	if !reflect.DeepEqual(paths, want) {
		t.Fatalf("paths %q, want %q", paths, want)
	}
	// Fingerprint writes them back in md5sum form, and that parses to the same set.
	again, err := ParseFingerprint(Fingerprint(got))
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(got) {
		t.Fatalf("round trip lost entries: %v", again)
	}
}

func TestParseFingerprintRejects(t *testing.T) {
	const sum = "d41d8cd98f00b204e9800998ecf8427e"
	for _, tc := range []struct{ name, in string }{
		{"short", "abc  /x\n"},
		{"one space", sum + " /x\n"},
		{"not hex", strings.Repeat("z", 32) + "  /x\n"},
		{"no path", sum + "  \n"},
		{"root path", sum + "  /\n"},
		{"bad escape", `\` + sum + `  /a\qb` + "\n"},
		{"trailing backslash", `\` + sum + `  /a\` + "\n"},
	} {
		if _, err := ParseFingerprint([]byte(tc.in)); err == nil {
			t.Errorf("%s: accepted %q", tc.name, tc.in)
		}
	}
}

func TestFingerprintExclusions(t *testing.T) {
	var s [16]byte
	got := string(Fingerprint([]FileSum{
		{Path: "config.json", MD5: s},
		{Path: "/deep/dir/config.json", MD5: s},
		{Path: "./" + FingerprintName, MD5: s},
		{Path: "config.json.bak", MD5: s},
		{Path: "/", MD5: s},
		{Path: "keep", MD5: s},
	}))
	want := "00000000000000000000000000000000  /config.json.bak\n00000000000000000000000000000000  /keep\n"
	if got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}
