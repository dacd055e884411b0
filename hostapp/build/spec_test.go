package build

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSpecStrict(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"unknown key", "device_type = \"x\"\n\ncolour = 1\n", `bad.toml:3: unknown key "colour"`},
		{"unknown nested key", "[sizes]\nboot = 40\nroof = 1\n", `bad.toml:3: unknown key "sizes.roof"`},
		{"wrong type", "alignment_mib = \"4\"\n", `bad.toml:1:`},
		{"negative size", "[sizes]\nroot = -1\n", `"sizes.root": -1 is negative`},
		{"bad table", "partition_table = \"apm\"\n", `"partition_table"`},
		{"bad boot file", "[boot]\nfiles = [\":/x\"]\n", `empty source`},
		{"syntax", "device_type = \n", `bad.toml:1`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(c.in), "bad.toml", "")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestDefaultSpecParses(t *testing.T) {
	s, err := DefaultSpec()
	if err != nil {
		t.Fatal(err)
	}
	if s.DeviceType != "genericx86-64-ext" || s.Rootfs.Source != "" {
		t.Fatalf("default spec %+v", s)
	}
}

func TestParseBootFile(t *testing.T) {
	cases := []struct {
		in   string
		want BootFile
		err  bool
	}{
		{"bzImage", BootFile{"bzImage", "/bzImage"}, false},
		{"bzImage:", BootFile{"bzImage", "/bzImage"}, false},
		{"grub.cfg:/EFI/BOOT/grub.cfg", BootFile{"grub.cfg", "/EFI/BOOT/grub.cfg"}, false},
		{"overlays:/overlays/", BootFile{"overlays", "/overlays/"}, false},
		{"a:b/c", BootFile{"a", "/b/c"}, false},
		{":x", BootFile{}, true},
		{"a:/../x", BootFile{}, true},
	}
	for _, c := range cases {
		got, err := ParseBootFile(c.in)
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("ParseBootFile(%q) = %+v, %v; want %+v, err %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestBootFileExpand(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "overlays", "sub"), 0o755)
	for _, f := range []string{"bzImage", "bzImage.sig", "overlays/b.dtbo", "overlays/a.dtbo", "overlays/sub/skip"} {
		os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644)
	}
	dsts := func(bf string) []string {
		b, err := ParseBootFile(bf)
		if err != nil {
			t.Fatal(err)
		}
		hf, err := b.expand(dir)
		if err != nil {
			t.Fatalf("%s: %v", bf, err)
		}
		var out []string
		for _, h := range hf {
			out = append(out, h.Dst)
		}
		return out
	}
	if got, want := dsts("bzImage:/kernel/"), []string{"/kernel/bzImage", "/kernel/bzImage.sig"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v want %v", got, want)
	}
	if got, want := dsts("overlays:/overlays/"), []string{"/overlays/a.dtbo", "/overlays/b.dtbo"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v want %v", got, want)
	}
	b, _ := ParseBootFile("overlays:/x")
	if _, err := b.expand(dir); err == nil {
		t.Error("a directory source with a file destination must fail")
	}
	b, _ = ParseBootFile("missing")
	if _, err := b.expand(dir); err == nil {
		t.Error("a missing source must fail")
	}
}
