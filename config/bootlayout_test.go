package config

import (
	"strings"
	"testing"
)

// TestDefaultBootFiles: every device type gets balenaOS's default boot files, the samples are loadable
// connection files that the OS leaves alone (.ignore), and U-Boot boards get extra_uEnv.txt.
func TestDefaultBootFiles(t *testing.T) {
	types := DeviceTypes()
	if len(types) == 0 {
		t.Fatal("no device types")
	}
	for _, dt := range types {
		files := map[string][]byte{}
		for _, f := range DefaultBootFiles(dt, "2.0.0") {
			if _, dup := files[f.Path]; dup {
				t.Errorf("%s: %s twice", dt.Slug, f.Path)
			}
			files[f.Path] = f.Data
		}
		for _, want := range []string{"/balena-image", "/image-version-info", "/system-connections/balena-sample.ignore",
			"/system-connections/README.ignore", "/system-proxy/redsocks.conf.ignore", "/system-proxy/README.ignore"} {
			if _, ok := files[want]; !ok {
				t.Errorf("%s: no %s", dt.Slug, want)
			}
		}
		if got := string(files["/image-version-info"]); got != "balena-image-"+dt.Slug+"-2.0.0\n" {
			t.Errorf("%s: image-version-info %q", dt.Slug, got)
		}
		_, uenv := files["/extra_uEnv.txt"]
		if want := dt.Bootloader == BootloaderUBoot || dt.Bootloader == BootloaderRPi; uenv != want {
			t.Errorf("%s (%s): extra_uEnv.txt present %v", dt.Slug, dt.Bootloader, uenv)
		}
		for p := range files {
			if strings.HasPrefix(p, "/system-connections/") && !strings.HasSuffix(p, ".ignore") {
				t.Errorf("%s: %s would be loaded by NetworkManager", dt.Slug, p)
			}
		}
	}
	sample := DefaultBootFiles(DeviceTypes()[0], "")[2]
	if err := ValidateConnectionFile("balena-sample.ignore", sample.Data); err != nil {
		t.Errorf("sample connection: %v", err)
	}
	k, err := ParseKeyfile(sample.Data)
	if err != nil {
		t.Fatal(err)
	}
	if typ, _ := k.Get("connection", "type"); typ != "wifi" {
		t.Errorf("sample type %q", typ)
	}
	if err := ValidatePSK(mustGet(t, k, "wifi-security", "psk")); err != nil {
		t.Errorf("sample psk: %v", err)
	}
}

func mustGet(t *testing.T, k *Keyfile, group, key string) string {
	t.Helper()
	v, ok := k.Get(group, key)
	if !ok {
		t.Fatalf("no %s.%s", group, key)
	}
	return v
}

// TestValidateConnectionFile: build and configure share this check; names that leave the directory or
// that FAT cannot hold, and contents NetworkManager cannot load (a NUL byte), are refused.
func TestValidateConnectionFile(t *testing.T) {
	good := []byte("[connection]\nid=x\ntype=wifi\n")
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"x", good, ""},
		{"../x", good, "path separator"},
		{".hidden", good, "dot"},
		{"a:b", good, "FAT cannot store"},
		{"a\xffb", good, "UTF-8"},
		{"nul", []byte("[connection]\nid=x\x00\ntype=wifi\n"), "NUL"},
		{"noid", []byte("[connection]\ntype=wifi\n"), "no id"},
	} {
		err := ValidateConnectionFile(c.name, c.data)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%q: %v, want %q", c.name, err, c.want)
		}
	}
}
