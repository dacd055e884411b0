package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostos/hostos/tests/testtool"
)

// balenaSecrets is a config.json holding a distinct value under every secret key balena's software
// defines (balena-supervisor's schema, balena-cli's ImgConfig, os-config's deviceApiKeys, the pubnub keys
// of older images, balena-device-config's wifiKey and OS 1.x files) and under names only the pattern
// catches, at depth and in arrays. The values are what must never be printed without --show-secrets.
var balenaSecrets = map[string]string{
	"apiKey":             "S3CR3T-apiKey",
	"deviceApiKey":       "S3CR3T-deviceApiKey",
	"mixpanelToken":      "S3CR3T-mixpanelToken",
	"pubnubSubscribeKey": "S3CR3T-pubnubSubscribeKey",
	"pubnubPublishKey":   "S3CR3T-pubnubPublishKey",
	"wifiKey":            "S3CR3T-wifiKey",
	"registryToken":      "S3CR3T-registryToken",
}

func secretConfig(t *testing.T, deviceType string) ([]byte, []string) {
	t.Helper()
	m := map[string]any{"deviceType": deviceType, "hostname": "keep-host", "wifiSsid": "keep-ssid"}
	var values []string
	for k, v := range balenaSecrets {
		m[k] = v
		values = append(values, v)
	}
	m["deviceApiKeys"] = map[string]any{"api.balena-cloud.com": "S3CR3T-deviceApiKeys-1", "api.example.org": "S3CR3T-deviceApiKeys-2"}
	m["files"] = map[string]any{"network/network.config": "[service_home_wifi]\nType = wifi\nName = home\nPassphrase = S3CR3T-files-passphrase\n"}
	m["os"] = map[string]any{"network": map[string]any{"wifiPassword": "S3CR3T-os-network-wifiPassword"}}
	m["custom"] = map[string]any{"networks": []any{map[string]any{"ssid": "keep-net", "psk": "S3CR3T-custom-psk"}}, "clientSecret": []any{"S3CR3T-custom-clientSecret"}}
	values = append(values, "S3CR3T-deviceApiKeys-1", "S3CR3T-deviceApiKeys-2", "S3CR3T-files-passphrase",
		"S3CR3T-os-network-wifiPassword", "S3CR3T-custom-psk", "S3CR3T-custom-clientSecret")
	b, err := json.Marshal(m)
	must(t, err)
	return b, values
}

// TestNoSecretPrinted: with every secret key balena's config.json can hold in the image, no command that
// reads or writes it (inspect, config read, text and --json, from an image and from --boot-dir; config
// write, configure, their errors) prints a secret value on stdout or stderr unless --show-secrets asks.
func TestNoSecretPrinted(t *testing.T) {
	img := genericImageCopy(t)
	dir := t.TempDir()
	cfg, secrets := secretConfig(t, "genericx86-64-ext")
	cfgFile := filepath.Join(dir, "secrets.json")
	must(t, os.WriteFile(cfgFile, cfg, 0o600))
	broken := filepath.Join(dir, "broken.json")
	must(t, os.WriteFile(broken, append(cfg[:len(cfg)-1], []byte(`,"apiKey":"S3CR3T-in-broken" junk}`)...), 0o600))
	secrets = append(secrets, "S3CR3T-in-broken", "S3CR3T-bad value")

	bootDir := filepath.Join(dir, "boot")
	must(t, os.MkdirAll(bootDir, 0o755))
	must(t, os.WriteFile(filepath.Join(bootDir, "config.json"), cfg, 0o600))

	var printed strings.Builder
	runs := [][]string{
		{"config", "inject", img, cfgFile},
		{"inspect", img},
		{"inspect", "--json", img},
		{"config", "read", img},
		{"config", "read", "--json", img},
		{"config", "read", "--boot-dir", bootDir},
		{"config", "read", "--json", "--boot-dir", bootDir},
		{"config", "write", img, "hostname", "after-secrets"},
		{"config", "write", "--json", img, "persistentLogging", "true"},
		{"configure", img, "--country", "de", "--json"},
		{"configure", "--boot-dir", bootDir, "--hostname", "dir-host"},
		// Refusals must not quote the secret either.
		{"config", "write", img, "apiKey", "S3CR3T-bad value"},
		{"config", "inject", img, broken},
	}
	for _, args := range runs {
		r := hostos(t, nil, nil, args...)
		// Only what hostos printed is judged (the arguments hold secrets themselves).
		fmt.Fprintf(&printed, "$ hostos %s (exit %d)\n%s%s", args[0], r.code, r.stdout, r.stderr)
		wantFail := args[len(args)-1] == broken || args[len(args)-1] == "S3CR3T-bad value"
		if (r.code != 0) != wantFail {
			t.Errorf("hostos %v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	out := printed.String()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("secret %s printed", s)
		}
	}
	if strings.Contains(out, "S3CR3T") {
		t.Errorf("a secret was printed:\n%s", out)
	}
	for _, keep := range []string{"keep-host", "keep-ssid", "keep-net", "api.balena-cloud.com", "<redacted>"} {
		if !strings.Contains(out, keep) {
			t.Errorf("%q missing from the output", keep)
		}
	}

	// The secrets are in the image all along: --show-secrets shows every one.
	shown := mustHostos(t, nil, nil, "config", "read", "--json", "--show-secrets", img) +
		mustHostos(t, nil, nil, "inspect", "--show-secrets", img)
	for _, s := range secrets[:len(secrets)-2] {
		if !strings.Contains(shown, s) {
			t.Errorf("--show-secrets lacks %s", s)
		}
	}
}

// TestTextOutputEscapesControls: a config.json carrying terminal escape sequences (in values and in key
// names) is printed by config read and inspect with every control character escaped; --json output
// holds no raw ESC either.
func TestTextOutputEscapesControls(t *testing.T) {
	img := genericImageCopy(t)
	inject := filepath.Join(t.TempDir(), "evil.json")
	must(t, os.WriteFile(inject, []byte(`{"deviceType":"genericx86-64-ext","motd":"\u001b[2J\u001b]0;pwned\u0007 \u009b31m\u202eevil","\u001b[31mname\r":"x","list":["\u001b[1m"]}`), 0o644))
	mustHostos(t, nil, nil, "config", "inject", img, inject)
	for _, args := range [][]string{{"config", "read", img}, {"inspect", img}, {"config", "read", "--json", img}, {"inspect", "--json", img}} {
		out := mustHostos(t, nil, nil, args...)
		if strings.ContainsAny(out, "\x1b\x07\r\u009b\u202e") {
			t.Errorf("hostos %v prints raw control characters: %q", args, out)
		}
		if !strings.Contains(out, "motd") || !strings.Contains(out, "pwned") {
			t.Errorf("hostos %v lost the value: %q", args, out)
		}
		if args[len(args)-2] != "--json" && !strings.Contains(out, `\x1b[31mname\r`) {
			t.Errorf("hostos %v does not show the key's escape as \\x1b: %q", args, out)
		}
	}
}

// TestConfigWriteValidatesLikeFlags: config write and config inject refuse a typed value the matching
// configure flag refuses, with the same reason, leaving every byte of the image as it was; accepted
// values are stored in the form the flag stores them.
func TestConfigWriteValidatesLikeFlags(t *testing.T) {
	img := genericImageCopy(t)
	dir := t.TempDir()
	for _, c := range []struct {
		key, value string
		flag       []string
		reason     string
	}{
		{"hostname", "bad_name", []string{"--hostname", "bad_name"}, "only letters, digits and hyphens"},
		{"hostname", "a.local", []string{"--hostname", "a.local"}, "single label"},
		{"uuid", "ABC", []string{"--uuid", "ABC"}, "32 lower-case hex digits"},
		{"country", "Deutschland", []string{"--country", "Deutschland"}, "two-letter"},
		{"dnsServers", "1.1.1.1;reboot", []string{"--dns", "1.1.1.1;reboot"}, "not a host name or address"},
		{"ntpServers", "$(reboot)", []string{"--ntp", "$(reboot)"}, "not a host name or address"},
		{"hostname", "12345", nil, "a string is required"},
		{"persistentLogging", "yes", nil, "true or false is required"},
		{"applicationId", "0", nil, "whole number"},
		{"deviceType", "raspberrypi3", nil, `does not match the image's "genericx86-64-ext"`},
	} {
		before := testtool.SHA256(t, img)
		r := hostos(t, nil, nil, "config", "write", img, c.key, c.value)
		if r.code == 0 || !strings.Contains(r.stderr, c.reason) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("config write %s %q: exit %d, %q, want %q", c.key, c.value, r.code, r.stderr, c.reason)
		}
		inject := filepath.Join(dir, c.key+".json")
		v, _ := json.Marshal(c.value)
		if c.key == "applicationId" || c.key == "hostname" && c.value == "12345" {
			v = []byte(c.value)
		}
		must(t, os.WriteFile(inject, []byte(fmt.Sprintf(`{"deviceType":"genericx86-64-ext",%q:%s}`, c.key, v)), 0o644))
		if r := hostos(t, nil, nil, "config", "inject", img, inject); r.code == 0 || !strings.Contains(r.stderr, c.reason) {
			t.Errorf("config inject %s %q: exit %d, %q", c.key, c.value, r.code, r.stderr)
		}
		if c.flag != nil {
			if r := hostos(t, nil, nil, append([]string{"configure", img}, c.flag...)...); r.code == 0 || !strings.Contains(r.stderr, c.reason) {
				t.Errorf("configure %v: exit %d, %q", c.flag, r.code, r.stderr)
			}
		}
		if testtool.SHA256(t, img) != before {
			t.Fatalf("refused %s %q changed the image", c.key, c.value)
		}
	}
	mustHostos(t, nil, nil, "config", "write", img, "country", "de")
	mustHostos(t, nil, nil, "config", "write", img, "dnsServers", " 1.1.1.1   9.9.9.9 ")
	var got map[string]any
	must(t, json.Unmarshal([]byte(mustHostos(t, nil, nil, "config", "read", "--json", img)), &got))
	if got["country"] != "DE" || got["dnsServers"] != "1.1.1.1 9.9.9.9" {
		t.Errorf("stored %v", got)
	}
}

// TestConfigInputInvalidUTF8: a config.json with an invalid UTF-8 byte is refused, naming the byte's
// offset, by config inject, configure --config and build, instead of becoming U+FFFD; nothing changes.
func TestConfigInputInvalidUTF8(t *testing.T) {
	img := genericImageCopy(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	must(t, os.WriteFile(bad, []byte("{\"deviceType\":\"genericx86-64-ext\",\"initialDeviceName\":\"caf\xe9\"}"), 0o644))
	before := testtool.SHA256(t, img)
	for _, args := range [][]string{{"config", "inject", img, bad}, {"configure", img, "--config", bad}} {
		r := hostos(t, nil, nil, args...)
		if r.code == 0 || !strings.Contains(r.stderr, "invalid UTF-8 at byte 58") {
			t.Errorf("hostos %v: exit %d, %q", args, r.code, r.stderr)
		}
	}
	if r := hostos(t, nil, nil, "config", "write", img, "initialDeviceName", "caf\xe9"); r.code == 0 || !strings.Contains(r.stderr, "invalid UTF-8 at byte 3") {
		t.Errorf("config write: exit %d, %q", r.code, r.stderr)
	}
	if testtool.SHA256(t, img) != before {
		t.Fatal("a refused config changed the image")
	}
	spec := filepath.Join(dir, "spec.toml")
	must(t, os.WriteFile(spec, []byte("version = \"2.0.0\"\n[sizes]\nroot = 64\nstate = 4\ndata = 4\n[boot]\nconfig_json = \"bad.json\"\n"), 0o644))
	out := filepath.Join(dir, "out.img")
	if r := hostos(t, nil, nil, "build", "-q", "--spec", spec, "-o", out); r.code == 0 || !strings.Contains(r.stderr, "invalid UTF-8 at byte 58") || fileExists(out) {
		t.Errorf("build: exit %d, %q", r.code, r.stderr)
	}
}

// TestBuildRefusesKeyfileConfigureRefuses: a keyfile configure refuses (a NUL byte, no id) is refused by
// build with the same reason, and no image appears.
func TestBuildRefusesKeyfileConfigureRefuses(t *testing.T) {
	img := genericImageCopy(t)
	dir := t.TempDir()
	for name, body := range map[string]string{
		"nul.nmconnection":  "[connection]\nid=x\x00\ntype=wifi\n",
		"noid.nmconnection": "[connection]\ntype=wifi\n",
	} {
		kf := filepath.Join(dir, name)
		must(t, os.WriteFile(kf, []byte(body), 0o600))
		r := hostos(t, nil, nil, "configure", img, "--system-connection", kf)
		if r.code == 0 {
			t.Fatalf("configure accepted %s", name)
		}
		reason := strings.TrimSpace(r.stderr[strings.LastIndex(r.stderr, "connection file:"):])
		spec := filepath.Join(dir, name+".toml")
		must(t, os.WriteFile(spec, []byte(fmt.Sprintf("version = \"2.0.0\"\n[sizes]\nroot = 64\nstate = 4\ndata = 4\n[boot]\nsystem_connections = [%q]\n", name)), 0o644))
		out := filepath.Join(dir, name+".img")
		b := hostos(t, nil, nil, "build", "-q", "--spec", spec, "-o", out)
		if b.code == 0 || !strings.Contains(b.stderr, reason) || fileExists(out) {
			t.Errorf("build with %s: exit %d, %q, want %q", name, b.code, b.stderr, reason)
		}
	}
}

// TestConfigureOutputKeepsMode: configure -o gives the output the input's permission bits, for a plain
// and for a compressed input, whatever the umask.
func TestConfigureOutputKeepsMode(t *testing.T) {
	img := genericImageCopy(t)
	dir := t.TempDir()
	xz := filepath.Join(dir, "in.img.xz")
	run(t, "sh", "-c", fmt.Sprintf("xz -T2 -0 -c %s > %s", img, xz))
	for _, c := range []struct {
		in   string
		mode os.FileMode
	}{{img, 0o600}, {xz, 0o600}, {img, 0o640}} {
		must(t, os.Chmod(c.in, c.mode))
		out := filepath.Join(dir, fmt.Sprintf("out-%o.img", c.mode))
		os.Remove(out)
		mustHostos(t, nil, nil, "configure", c.in, "-o", out, "--hostname", "private")
		fi, err := os.Stat(out)
		must(t, err)
		if fi.Mode().Perm() != c.mode {
			t.Errorf("configure %s (%o) -o: output mode %o", filepath.Base(c.in), c.mode, fi.Mode().Perm())
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*hostos*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestBootDirSymlinkEscape: --boot-dir with a system-connections (or config.json) that is a symlink
// leading out of the directory is refused with a clear error and nothing outside is written.
func TestBootDirSymlinkEscape(t *testing.T) {
	base := t.TempDir()
	boot := filepath.Join(base, "boot")
	outside := filepath.Join(base, "outside")
	must(t, os.MkdirAll(boot, 0o755))
	must(t, os.MkdirAll(outside, 0o755))
	must(t, os.WriteFile(filepath.Join(boot, "config.json"), []byte(`{"deviceType":"genericx86-64-ext"}`), 0o644))
	must(t, os.Symlink("../outside", filepath.Join(boot, "system-connections")))
	r := hostos(t, nil, nil, "configure", "--boot-dir", boot, "--wifi-ssid", "Net", "--wifi-key", "password123")
	if r.code == 0 || !strings.Contains(r.stderr, "leads outside the boot directory") {
		t.Errorf("configure: exit %d, %q", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("written outside the boot directory: %v", ents)
	}

	must(t, os.WriteFile(filepath.Join(outside, "config.json"), []byte(`{"apiKey":"S3CR3T-outside"}`), 0o600))
	must(t, os.Remove(filepath.Join(boot, "config.json")))
	must(t, os.Symlink(filepath.Join(outside, "config.json"), filepath.Join(boot, "config.json")))
	for _, args := range [][]string{{"config", "read", "--show-secrets", "--boot-dir", boot}, {"config", "write", "--boot-dir", boot, "hostname", "x"}} {
		r := hostos(t, nil, nil, args...)
		if r.code == 0 || strings.Contains(r.stdout, "S3CR3T") || !strings.Contains(r.stderr, "leads outside the boot directory") {
			t.Errorf("hostos %v: exit %d, %q %q", args, r.code, r.stdout, r.stderr)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "config.json")); string(b) != `{"apiKey":"S3CR3T-outside"}` {
		t.Errorf("config.json outside changed: %s", b)
	}
}
