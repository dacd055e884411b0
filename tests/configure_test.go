package tests

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/tests/testtool"
)

// Two OpenSSH public keys made by ssh-keygen for these tests (the private halves were discarded).
const (
	sshKeyEd25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPnUgeUH1kjifcsch3u997KHN3QPn1BxmWqyhWxgq4PA hostos-test-1"
	sshKeyRSA     = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7w72UfRX0em85a+/9ly9btrj7EpUCst5Oi3DThyAKsehmsDcnANIiglpqwkpWrDkTjwKO81yO2oDLKnmC0y/55gnwcW2YMGvFi3YERqocKj4vTq2kY/iCNjweoWmp03Zm/HAW/aHoTgzOldd1gb/Ak6+WrubuwN30LCz1cmlMge3TZt6PJ/PYnQh8w7M+BxouLAUGGB6VnuZRmJryAIVFJpsxWjg45cpm1VtxCoKrNwKDUKFkQO4eKVIJOe/k3laia0OUUtGn7PnFqW61a5sPM4EDDBGwrIFoSQDLwrHa2qH659fZAltdFOU0bJ5nQskmMG0W317RKEI+c9Aunwgp hostos-test-2"
)

// Awkward Wi-Fi credentials: every character balena's CLI gets wrong.
const (
	wifiSSID = `Café "#1"; a=b \ x`
	wifiKey  = `p@ss;#="q" \w0rd`
)

// builtImage builds an image with hostos build from the fixture for deviceType and table.
func builtImage(t *testing.T, deviceType, table string) string {
	t.Helper()
	fx := newFixture(t, deviceType, table, "")
	mustHostos(t, []string{"SOURCE_DATE_EPOCH=1600000000"}, nil, "build", "-q", "--spec", fx.spec, "-o", fx.out)
	return fx.out
}

// imageCases are the images every configure interop test runs on: made by hostos build, and made by a
// plain shell script (upper-case label, FAT32, GPT).
func imageCases(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"built-msdos-fat16": func(t *testing.T) string { return builtImage(t, "genericx86-64-ext", "msdos") },
		"built-msdos-fat32": func(t *testing.T) string { return builtImage(t, "raspberrypi4-64", "msdos") },
		"built-gpt":         func(t *testing.T) string { return builtImage(t, "generic-amd64-efi", "gpt") },
		"shell-msdos-fat16-RESIN-BOOT": func(t *testing.T) string {
			return shellImage(t, "msdos", 16, "RESIN-BOOT")
		},
		"shell-gpt-fat32": func(t *testing.T) string { return shellImage(t, "gpt", 32, "resin-boot") },
	}
}

// bootRange is the byte range of partition 1, the boot partition of every test image.
func bootRange(t *testing.T, img string) (int64, int64) {
	t.Helper()
	pt := sfdiskJSON(t, img)
	for _, p := range pt.Partitions {
		if strings.HasSuffix(p.Node, "1") && !strings.HasSuffix(p.Node, "11") {
			return p.Start * 512, p.Size * 512
		}
	}
	t.Fatalf("%s: no partition 1", img)
	return 0, 0
}

// outsideHash hashes every byte of img except [off, off+size).
func outsideHash(t *testing.T, img string, off, size int64) string {
	t.Helper()
	f, err := os.Open(img)
	must(t, err)
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, off)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(h, io.NewSectionReader(f, off+size, 1<<62)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writePNG writes a w×h PNG; noisy pixels make it incompressible.
func writePNG(t *testing.T, p string, w, h int, noisy bool) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(1, 2))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.NRGBA{uint8(x), uint8(y), 0x80, 0xff}
			if noisy {
				c = color.NRGBA{uint8(r.Uint32()), uint8(r.Uint32()), uint8(r.Uint32()), 0xff}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var b bytes.Buffer
	must(t, png.Encode(&b, img))
	must(t, os.WriteFile(p, b.Bytes(), 0o644))
	return b.Bytes()
}

// configureInputs writes the files a full configure run reads and returns its arguments.
func configureInputs(t *testing.T, dir string) []string {
	t.Helper()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	extra := write("extra.json", `{"os":{"network":{"connectivity":{"uri":"https://api.example.com/connectivity-check","interval":"300"}}},"appUpdatePollInterval":900000,"custom":{"keep":[1,2.50,"x"]}}`)
	keys := write("authorized_keys", "# team keys\n\n"+sshKeyRSA+"\n")
	rule := write("64-usb.rules", `ACTION=="add", SUBSYSTEM=="usb", MODE="0666"`+"\n")
	conn := write("office-vpn", "[connection]\nid=office-vpn\ntype=vpn\n\n[vpn]\nservice-type=org.freedesktop.NetworkManager.openvpn\n")
	writePNG(t, filepath.Join(dir, "logo.png"), 64, 32, false)
	return []string{
		"--config", extra,
		"--hostname", "line-7-unit",
		"--persistent-logging",
		"--dev",
		"--ssh-key", sshKeyEd25519, "--ssh-key", keys, "--ssh-key", sshKeyEd25519,
		"--provisioning-key", "SECRETPROVISIONINGKEY", "--fleet", "1234567", "--api-endpoint", "https://api.example.com",
		"--initial-device-name", "line 7", "--uuid", "0123456789abcdef0123456789abcdef",
		"--dns", "1.1.1.1 9.9.9.9", "--ntp", "time.example.com pool.ntp.org", "--country", "de",
		"--udev-rule", "64-usb=" + rule,
		"--wifi-ssid", wifiSSID, "--wifi-key", wifiKey,
		"--system-connection", conn,
		"--splash", filepath.Join(dir, "logo.png"),
	}
}

// TestConfigureInterop configures images made by hostos and by a shell script with every flag at once and
// has balena's own tools read the result; a second identical run changes nothing.
func TestConfigureInterop(t *testing.T) {
	t.Parallel() // own images and work directories: runs beside the other long tests
	for name, mk := range imageCases(t) {
		t.Run(name, func(t *testing.T) {
			img := mk(t)
			dir := t.TempDir()
			args := configureInputs(t, dir)
			off, size := bootRange(t, img)
			outside := outsideHash(t, img, off, size)
			env := []string{"SOURCE_DATE_EPOCH=1700000000"}
			r := hostos(t, env, nil, append([]string{"configure", img}, args...)...)
			if r.code != 0 {
				t.Fatalf("configure: exit %d: %s", r.code, r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, "SECRETPROVISIONINGKEY") {
				t.Errorf("configure printed the provisioning key: %s%s", r.stdout, r.stderr)
			}
			if got := outsideHash(t, img, off, size); got != outside {
				t.Error("bytes outside the boot partition changed")
			}
			fsckVfat(t, img, off, size)

			// What hostos says is in config.json.
			var got map[string]any
			must(t, json.Unmarshal([]byte(mustHostos(t, nil, nil, "config", "read", "--json", "--show-secrets", img)), &got))
			want := map[string]any{
				"hostname": "line-7-unit", "persistentLogging": true, "developmentMode": true,
				"apiKey": "SECRETPROVISIONINGKEY", "applicationId": 1234567.0, "apiEndpoint": "https://api.example.com",
				"deltaEndpoint": "https://delta.example.com", "vpnEndpoint": "vpn.example.com",
				"registryEndpoint": "registry2.example.com", "uuid": "0123456789abcdef0123456789abcdef",
				"registered_at": 1700000000.0, "initialDeviceName": "line 7",
				"dnsServers": "1.1.1.1 9.9.9.9", "ntpServers": "time.example.com pool.ntp.org", "country": "DE",
				"appUpdatePollInterval": 900000.0, "custom": map[string]any{"keep": []any{1.0, 2.5, "x"}},
			}
			for k, v := range want {
				if !reflect.DeepEqual(got[k], v) {
					t.Errorf("config.json %s = %#v, want %#v", k, got[k], v)
				}
			}
			osv, _ := got["os"].(map[string]any)
			if keys, _ := osv["sshKeys"].([]any); len(keys) != 2 || keys[0] != sshKeyEd25519 || keys[1] != sshKeyRSA {
				t.Errorf("os.sshKeys = %#v", osv["sshKeys"])
			}
			if rules, _ := osv["udevRules"].(map[string]any); !strings.Contains(fmt.Sprint(rules["64-usb"]), `SUBSYSTEM=="usb"`) {
				t.Errorf("os.udevRules = %#v", osv["udevRules"])
			}
			if nw, _ := osv["network"].(map[string]any); nw == nil {
				t.Errorf("os.network lost in the merge: %#v", osv)
			}
			if got["deviceType"] == nil || got["deviceApiKey"] == nil && strings.HasPrefix(name, "shell") {
				t.Errorf("keys present before configure were lost: %v", got)
			}

			// balena-config-json reads the same JSON.
			var theirs map[string]any
			if out := runOracle(t, "read-config", img); json.Unmarshal([]byte(out), &theirs) != nil {
				t.Fatalf("balena-config-json read-config:\n%s", out)
			}
			if !reflect.DeepEqual(theirs, got) {
				t.Errorf("balena-config-json reads\n%v\nhostos reads\n%v", theirs, got)
			}
			// balena-image-fs reads the keyfiles byte for byte.
			wifi, err := config.Wifi{SSID: wifiSSID, PSK: wifiKey}.Keyfile()
			must(t, err)
			conn, _ := os.ReadFile(filepath.Join(dir, "office-vpn"))
			for file, body := range map[string][]byte{"/system-connections/resin-wifi": wifi, "/system-connections/office-vpn": conn} {
				if got := runOracle(t, "read-file", img, "1", file); got != string(body)+"\n" {
					t.Errorf("balena-image-fs %s:\n%q\nwant\n%q", file, got, body)
				}
			}
			splash := strings.Fields(runOracle(t, "ls", img, "1", "/splash"))
			wantSplash := []string{"balena-logo.png"}
			if strings.HasPrefix(name, "shell") { // OS 2.51 reads the legacy name
				wantSplash = []string{"balena-logo.png", "resin-logo.png"}
			}
			if !reflect.DeepEqual(splash, wantSplash) {
				t.Errorf("splash/ holds %v, want %v", splash, wantSplash)
			}
			if r := inspectJSON(t, img); r.Config["apiKey"] != config.Redacted {
				t.Errorf("inspect shows apiKey %v", r.Config["apiKey"])
			}

			// Again with the same flags: nothing changes.
			before := testtool.SHA256(t, img)
			r = hostos(t, env, nil, append([]string{"configure", img}, args...)...)
			if r.code != 0 || !strings.Contains(r.stdout, "nothing written") {
				t.Errorf("second run: exit %d, %q %q", r.code, r.stdout, r.stderr)
			}
			if testtool.SHA256(t, img) != before {
				t.Error("second identical configure changed the image")
			}
		})
	}
}

// TestConfigureReadsBalena: what balena-device-init configure() writes, hostos reads.
func TestConfigureReadsBalena(t *testing.T) {
	t.Parallel() // own images and work directories: runs beside the other long tests
	for _, name := range []string{"built-msdos-fat16", "shell-gpt-fat32"} {
		t.Run(name, func(t *testing.T) {
			img := imageCases(t)[name](t)
			cfg := filepath.Join(t.TempDir(), "config.json")
			must(t, os.WriteFile(cfg, []byte(`{"deviceType":"raspberrypi3","applicationId":42,"apiKey":"SECRETFROMBALENA","hostname":"from-balena","persistentLogging":true}`), 0o644))
			runOracle(t, "configure", img, cfg, "Balena Net", "balena-pass-123")
			var got map[string]any
			must(t, json.Unmarshal([]byte(mustHostos(t, nil, nil, "config", "read", "--json", "--show-secrets", img)), &got))
			var theirs map[string]any
			must(t, json.Unmarshal([]byte(runOracle(t, "read-config", img)), &theirs))
			if !reflect.DeepEqual(got, theirs) || got["apiKey"] != "SECRETFROMBALENA" || got["applicationId"] != 42.0 {
				t.Errorf("hostos reads %v\nbalena reads %v", got, theirs)
			}
			text := mustHostos(t, nil, nil, "config", "read", img)
			if strings.Contains(text, "SECRETFROMBALENA") || !strings.Contains(text, "hostname: from-balena") {
				t.Errorf("config read:\n%s", text)
			}
			if r := inspectJSON(t, img); r.Config["hostname"] != "from-balena" {
				t.Errorf("inspect config %v", r.Config)
			}
			// The keyfile balena wrote is a valid NetworkManager connection as hostos reads it.
			wifi := runOracle(t, "read-file", img, "1", "/system-connections/resin-wifi")
			k, err := config.ParseKeyfile([]byte(wifi))
			must(t, err)
			if ssid, _ := k.Get("wifi", "ssid"); ssid != "Balena Net" {
				t.Errorf("ssid %q in\n%s", ssid, wifi)
			}
			// And hostos configures on top of balena's work.
			mustHostos(t, nil, nil, "configure", img, "--hostname", "after-balena")
			off, size := bootRange(t, img)
			fsckVfat(t, img, off, size)
		})
	}
}

// TestConfigureOutput: --output leaves the input untouched, also for compressed inputs, which are
// refused in place with a message saying how to proceed.
func TestConfigureOutput(t *testing.T) {
	t.Parallel() // own images and work directories: runs beside the other long tests
	img := builtImage(t, "genericx86-64-ext", "msdos")
	dir := t.TempDir()
	zst := filepath.Join(dir, "in.img.zst")
	run(t, testtool.Need(t, "zstd"), "-q", "-3", img, "-o", zst)
	xz := filepath.Join(dir, "in.img.xz")
	run(t, "sh", "-c", fmt.Sprintf("xz -T2 -0 -c %s > %s", img, xz))
	gz := filepath.Join(dir, "in.img.gz")
	run(t, "sh", "-c", fmt.Sprintf("gzip -1 -c %s > %s", img, gz))
	zipped := filepath.Join(dir, "in.zip")
	writeZip(t, zipped, img)
	var firstOut string
	for _, in := range []string{img, zst, xz, gz, zipped} {
		t.Run(filepath.Base(in), func(t *testing.T) {
			before := testtool.SHA256(t, in)
			out := filepath.Join(t.TempDir(), "out.img")
			if in != img {
				r := hostos(t, nil, nil, "configure", in, "--hostname", "copy")
				msg := strings.TrimSpace(r.stderr)
				if r.code != 1 || strings.Contains(msg, "\n") || !strings.Contains(msg, "compressed") || !strings.Contains(msg, "--output") {
					t.Errorf("in place on %s: exit %d, %q", in, r.code, msg)
				}
			}
			mustHostos(t, nil, nil, "configure", in, "-o", out, "--hostname", "copy", "--wifi-ssid", "n", "--wifi-key", "12345678")
			if testtool.SHA256(t, in) != before {
				t.Error("input changed")
			}
			off, size := bootRange(t, out)
			if outsideHash(t, out, off, size) != outsideHash(t, img, off, size) {
				t.Error("output differs from the input outside the boot partition")
			}
			fsckVfat(t, out, off, size)
			if c := inspectJSON(t, out).Config; c["hostname"] != "copy" {
				t.Errorf("output config %v", c)
			}
			if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*hostos*")); len(leftovers) > 0 {
				t.Errorf("temporary files left: %v", leftovers)
			}
			// Same input image, same flags: the same bytes, whatever the input's compression.
			if firstOut == "" {
				firstOut = testtool.SHA256(t, out)
			} else if got := testtool.SHA256(t, out); got != firstOut {
				t.Errorf("output sha256 %s differs from the first output's %s", got, firstOut)
			}
		})
	}
}

// writeZip stores img as the one member of a zip archive, as balena's download site ships images.
func writeZip(t *testing.T, zipPath, img string) {
	t.Helper()
	f, err := os.Create(zipPath)
	must(t, err)
	zw := zip.NewWriter(f)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "balena.img", Method: zip.Deflate})
	must(t, err)
	in, err := os.Open(img)
	must(t, err)
	defer in.Close()
	_, err = io.Copy(w, in)
	must(t, err)
	must(t, zw.Close())
	must(t, f.Close())
}

// TestConfigWrite: typed values, dotted keys, --string, inject; balena-config-json sees the types.
func TestConfigWrite(t *testing.T) {
	img := builtImage(t, "raspberrypi4-64", "msdos")
	for _, kv := range [][]string{
		{"persistentLogging", "true"}, {"applicationId", "1234"}, {"os.network.connectivity.uri", "https://x.example/check"},
		{"os.sshKeys", `["` + sshKeyEd25519 + `"]`}, {"dnsServers", "null"}, {"--string", "userId", "77"},
	} {
		mustHostos(t, nil, nil, append([]string{"config", "write", img}, kv...)...)
	}
	var theirs map[string]any
	must(t, json.Unmarshal([]byte(runOracle(t, "read-config", img)), &theirs))
	osv, _ := theirs["os"].(map[string]any)
	nw, _ := osv["network"].(map[string]any)
	cc, _ := nw["connectivity"].(map[string]any)
	switch {
	case theirs["persistentLogging"] != true, theirs["applicationId"] != 1234.0, theirs["userId"] != "77",
		theirs["dnsServers"] != nil, cc["uri"] != "https://x.example/check", len(osv["sshKeys"].([]any)) != 1:
		t.Errorf("balena-config-json reads %v", theirs)
	}
	if _, ok := theirs["dnsServers"]; !ok {
		t.Error("dnsServers null was dropped")
	}
	// inject replaces the whole document.
	inj := filepath.Join(t.TempDir(), "new.json")
	must(t, os.WriteFile(inj, []byte(`{"deviceType":"raspberrypi4-64","hostname":"injected"}`), 0o644))
	mustHostos(t, nil, nil, "config", "inject", img, inj)
	theirs = nil
	must(t, json.Unmarshal([]byte(runOracle(t, "read-config", img)), &theirs))
	if !reflect.DeepEqual(theirs, map[string]any{"deviceType": "raspberrypi4-64", "hostname": "injected"}) {
		t.Errorf("after inject balena reads %v", theirs)
	}
	off, size := bootRange(t, img)
	fsckVfat(t, img, off, size)
}

// TestConfigureBootDir: the same commands on a mounted boot partition (a directory).
func TestConfigureBootDir(t *testing.T) {
	boot := t.TempDir()
	must(t, os.WriteFile(filepath.Join(boot, "config.json"), []byte(`{"deviceType":"raspberrypi3","persistentLogging":false}`), 0o644))
	must(t, os.WriteFile(filepath.Join(boot, "device-type.json"), []byte(`{"slug":"raspberrypi3","arch":"armv7hf"}`), 0o644))
	mustHostos(t, nil, nil, "configure", "--boot-dir", boot, "--hostname", "ondevice", "--wifi-ssid", "net", "--wifi-key", "12345678",
		"--ethernet-static", "192.168.7.20/24", "--gateway", "192.168.7.1", "--dns", "192.168.7.1 1.1.1.1")
	mustHostos(t, nil, nil, "config", "write", "--boot-dir", boot, "persistentLogging", "true")
	var got map[string]any
	must(t, json.Unmarshal([]byte(mustHostos(t, nil, nil, "config", "read", "--json", "--boot-dir", boot)), &got))
	if got["hostname"] != "ondevice" || got["persistentLogging"] != true || got["deviceType"] != "raspberrypi3" {
		t.Errorf("config %v", got)
	}
	b, err := os.ReadFile(filepath.Join(boot, "system-connections", "resin-wifi"))
	if err != nil || !bytes.Contains(b, []byte("ssid=net\n")) {
		t.Errorf("resin-wifi: %v\n%s", err, b)
	}
	eth, err := os.ReadFile(filepath.Join(boot, "system-connections", "resin-ethernet"))
	must(t, err)
	k, err := config.ParseKeyfile(eth)
	must(t, err)
	if a, _ := k.Get("ipv4", "address1"); a != "192.168.7.20/24,192.168.7.1" {
		t.Errorf("resin-ethernet address1 %q:\n%s", a, eth)
	}
	if d, _ := k.Get("ipv4", "dns"); d != "192.168.7.1;1.1.1.1;" {
		t.Errorf("resin-ethernet dns %q:\n%s", d, eth)
	}
	if got["dnsServers"] != "192.168.7.1 1.1.1.1" {
		t.Errorf("dnsServers %v", got["dnsServers"])
	}
	if left, _ := filepath.Glob(filepath.Join(boot, ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestConfigureBadInputs: each bad input gives one line naming the problem, exit 1 (2 for bad usage),
// and leaves the image's bytes exactly as they were.
func TestConfigureBadInputs(t *testing.T) {
	t.Parallel() // own images and work directories: runs beside the other long tests
	img := builtImage(t, "genericx86-64-ext", "msdos")
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	junk := write("junk.img", strings.Repeat("not a disk image ", 8192))
	trunc := filepath.Join(dir, "trunc.img")
	run(t, "dd", "if="+img, "of="+trunc, "bs=1M", "count=50", "status=none")
	noBoot := filepath.Join(dir, "noboot.img")
	run(t, "truncate", "-s", "64M", noBoot)
	run(t, "sh", "-c", "echo 'start=2048, size=100000, type=83' | sfdisk -q "+noBoot)
	run(t, "mkfs.ext4", "-q", "-F", "-E", "offset=1048576", noBoot, "40000k")
	badCfg := builtImage(t, "genericx86-64-ext", "msdos")
	off, _ := bootRange(t, badCfg)
	brokenJSON := write("broken.json", `{"deviceType": "genericx86-64-ext", `)
	run(t, "mcopy", "-o", "-i", fmt.Sprintf("%s@@%d", badCfg, off), brokenJSON, "::/config.json")
	notPNG := write("logo.png", "\x89PNG\r\n\x1a\nnot really an image body")
	bigPNG := filepath.Join(dir, "big.png")
	writePNG(t, bigPNG, 2600, 2600, true)                                         // ~20 MB of noise: over the 16 MiB splash limit
	hugeCfg := write("huge.json", `{"padding":"`+strings.Repeat("x", 2<<20)+`"}`) // over the 1 MiB config.json limit
	// A boot partition with 38 MiB of its 40 taken: a 3 MB splash does not fit.
	fullBoot := builtImage(t, "genericx86-64-ext", "msdos")
	fullOff, _ := bootRange(t, fullBoot)
	filler := filepath.Join(dir, "filler")
	must(t, os.WriteFile(filler, bytes.Repeat([]byte{0xa5}, 38<<20), 0o644))
	run(t, "mcopy", "-i", fmt.Sprintf("%s@@%d", fullBoot, fullOff), filler, "::/filler")
	midPNG := filepath.Join(dir, "mid.png")
	writePNG(t, midPNG, 1000, 1000, true)
	badConn := write("bad-conn", "[connection]\nid=x\n")
	colonConn := write("bad:name", "[connection]\nid=x\ntype=wifi\n")
	badJSON := write("list.json", `[1,2]`)
	cases := []struct {
		name  string
		image string
		args  []string
		code  int
		want  string
	}{
		{"not an image", junk, []string{"--hostname", "x"}, 1, "junk.img"},
		{"truncated image", trunc, []string{"--hostname", "x"}, 1, "trunc.img"},
		{"no boot partition", noBoot, []string{"--hostname", "x"}, 1, "partition 1"},
		{"unparseable config.json", badCfg, []string{"--hostname", "x"}, 1, "config.json"},
		{"invalid hostname", img, []string{"--hostname", "bad_host"}, 1, "bad_host"},
		{"hostname too long", img, []string{"--hostname", strings.Repeat("a", 64)}, 1, "hostname"},
		{"invalid ssh key", img, []string{"--ssh-key", "ssh-ed25519 AAAAnotbase64!!"}, 1, "ssh"},
		{"short psk", img, []string{"--wifi-ssid", "n", "--wifi-key", "short"}, 1, "8"},
		{"long ssid", img, []string{"--wifi-ssid", strings.Repeat("s", 33), "--wifi-key", "12345678"}, 1, "32"},
		{"not a png", img, []string{"--splash", notPNG}, 1, "splash"},
		{"splash too large", img, []string{"--splash", bigPNG}, 1, "16 MiB"},
		{"config.json over its limit", img, []string{"--config", hugeCfg}, 1, "1 MiB"},
		{"boot partition full", fullBoot, []string{"--splash", midPNG}, 1, "full"},
		{"keyfile without type", img, []string{"--system-connection", badConn}, 1, "type"},
		{"keyfile name FAT cannot hold", img, []string{"--system-connection", colonConn}, 1, "bad:name"},
		{"device type mismatch", img, []string{"--provisioning-key", "SECRETKEY", "--fleet", "1", "--device-type", "raspberrypi3"}, 1, "raspberrypi3"},
		{"config not an object", img, []string{"--config", badJSON}, 1, "object"},
		{"bad uuid", img, []string{"--uuid", "XYZ"}, 1, "XYZ"},
		{"dev and production", img, []string{"--dev", "--production"}, 2, "--production"},
		{"fleet without key", img, []string{"--fleet", "5"}, 2, "--provisioning-key"},
		{"bad ethernet", img, []string{"--ethernet-static", "10.0.0.1"}, 1, "ADDR/PREFIX"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := testtool.SHA256(t, c.image)
			r := hostos(t, nil, nil, append([]string{"configure", c.image}, c.args...)...)
			msg := strings.TrimSpace(r.stderr)
			if r.code != c.code || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "hostos: ") || !strings.Contains(msg, c.want) {
				t.Errorf("exit %d (want %d), stderr %q (want it to mention %q)", r.code, c.code, msg, c.want)
			}
			if strings.Contains(msg, "SECRETKEY") {
				t.Errorf("error shows the provisioning key: %s", msg)
			}
			if testtool.SHA256(t, c.image) != before {
				t.Error("image changed")
			}
		})
	}
}

// TestConfigureConfigLocation: config.json where device-type.json says, on another partition and path
// than the boot partition's /config.json, as some balena boards keep it.
func TestConfigureConfigLocation(t *testing.T) {
	for _, tool := range []string{"sfdisk", "mkfs.vfat", "mcopy", "mtype"} {
		testtool.Need(t, tool)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "two-fat.img")
	run(t, "truncate", "-s", "64M", img)
	run(t, "sh", "-c", "printf 'label: dos\\nstart=2048, size=40960, type=e\\nstart=43008, size=40960, type=c\\n' | sfdisk -q "+img)
	run(t, "mkfs.vfat", "-n", "resin-boot", "--offset", "2048", img, "20480")
	run(t, "mkfs.vfat", "-n", "CONF", "--offset", "43008", img, "20480")
	manifest := write(t, dir, "device-type.json",
		`{"slug":"raspberrypi3","arch":"armv7hf","configuration":{"config":{"partition":2,"path":"/settings/config.json"}}}`)
	run(t, "mcopy", "-i", fmt.Sprintf("%s@@%d", img, 2048*512), manifest, "::/device-type.json")
	conf := fmt.Sprintf("%s@@%d", img, 43008*512)
	run(t, "mmd", "-i", conf, "::/settings")
	run(t, "mcopy", "-i", conf, write(t, dir, "config.json", `{"deviceType":"raspberrypi3"}`), "::/settings/config.json")

	mustHostos(t, nil, nil, "configure", img, "--hostname", "located")
	got := run(t, "mtype", "-i", conf, "::/settings/config.json")
	if !strings.Contains(got, `"hostname":"located"`) {
		t.Errorf("config.json on partition 2: %q", got)
	}
	if out, err := exec.Command("mtype", "-i", fmt.Sprintf("%s@@%d", img, 2048*512), "::/config.json").CombinedOutput(); err == nil {
		t.Errorf("a config.json appeared on the boot partition: %s", out)
	}
	var c map[string]any
	must(t, json.Unmarshal([]byte(mustHostos(t, nil, nil, "config", "read", "--json", img)), &c))
	if c["hostname"] != "located" {
		t.Errorf("config read: %v", c)
	}
}

func write(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	must(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}
