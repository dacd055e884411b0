package config

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const testProvKey = "PROVKEY-9c1d8e"

func testProvisioning() Provisioning {
	return Provisioning{
		APIKey:       testProvKey,
		FleetID:      1234567,
		DeviceType:   "raspberrypi4-64",
		RegisteredAt: 1700000000,
		Rand:         bytes.NewReader(bytes.Repeat([]byte{0x5a}, 16)),
	}
}

func TestProvision(t *testing.T) {
	const generated = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
	tests := []struct {
		name   string
		config string
		edit   func(*Provisioning)
		want   string
	}{
		{"fresh image", `{"deviceType":"raspberrypi4-64","persistentLogging":false}`, nil,
			`{"apiEndpoint":"https://api.balena-cloud.com","apiKey":"PROVKEY-9c1d8e","applicationId":1234567,` +
				`"deltaEndpoint":"https://delta.balena-cloud.com","deviceType":"raspberrypi4-64","listenPort":48484,` +
				`"persistentLogging":false,"registered_at":1700000000,"registryEndpoint":"registry2.balena-cloud.com",` +
				`"uuid":"` + generated + `","vpnEndpoint":"vpn.balena-cloud.com","vpnPort":443}`},
		{"own endpoint, uuid and name", `{"hostname":"keep","listenPort":1,"vpnPort":2}`, func(p *Provisioning) {
			p.APIEndpoint = "https://API.Example.org/"
			p.UUID = "0123456789abcdef0123456789abcdef"
			p.InitialDeviceName = "kitchen pi"
			p.DeviceType = "intel-nuc"
		}, `{"apiEndpoint":"https://api.example.org","apiKey":"PROVKEY-9c1d8e","applicationId":1234567,` +
			`"deltaEndpoint":"https://delta.example.org","deviceType":"intel-nuc","hostname":"keep",` +
			`"initialDeviceName":"kitchen pi","listenPort":1,"registered_at":1700000000,` +
			`"registryEndpoint":"registry2.example.org","uuid":"0123456789abcdef0123456789abcdef",` +
			`"vpnEndpoint":"vpn.example.org","vpnPort":2}`},
		{"present uuid kept, device type from config", `{"deviceType":"fincm3","uuid":"ffffffffffffffffffffffffffffffff"}`,
			func(p *Provisioning) { p.DeviceType = ""; p.APIEndpoint = "http://api.balena.local" },
			`{"apiEndpoint":"http://api.balena.local","apiKey":"PROVKEY-9c1d8e","applicationId":1234567,` +
				`"deltaEndpoint":"https://delta.balena.local","deviceType":"fincm3","listenPort":48484,` +
				`"registered_at":1700000000,"registryEndpoint":"registry2.balena.local",` +
				`"uuid":"ffffffffffffffffffffffffffffffff","vpnEndpoint":"vpn.balena.local","vpnPort":443}`},
		{"given uuid replaces present", `{"deviceType":"x","uuid":"ffffffffffffffffffffffffffffffff"}`,
			func(p *Provisioning) { p.UUID = "00000000000000000000000000000001" },
			`{"apiEndpoint":"https://api.balena-cloud.com","apiKey":"PROVKEY-9c1d8e","applicationId":1234567,` +
				`"deltaEndpoint":"https://delta.balena-cloud.com","deviceType":"raspberrypi4-64","listenPort":48484,` +
				`"registered_at":1700000000,"registryEndpoint":"registry2.balena-cloud.com",` +
				`"uuid":"00000000000000000000000000000001","vpnEndpoint":"vpn.balena-cloud.com","vpnPort":443}`},
		{"same provisioning keeps registered_at", `{"apiEndpoint":"https://api.balena-cloud.com","apiKey":"PROVKEY-9c1d8e",` +
			`"applicationId":1234567,"registered_at":1600000000,"uuid":"ffffffffffffffffffffffffffffffff"}`, nil,
			`{"apiEndpoint":"https://api.balena-cloud.com","apiKey":"PROVKEY-9c1d8e","applicationId":1234567,` +
				`"deltaEndpoint":"https://delta.balena-cloud.com","deviceType":"raspberrypi4-64","listenPort":48484,` +
				`"registered_at":1600000000,"registryEndpoint":"registry2.balena-cloud.com",` +
				`"uuid":"ffffffffffffffffffffffffffffffff","vpnEndpoint":"vpn.balena-cloud.com","vpnPort":443}`},
		{"new fleet renews registered_at", `{"apiEndpoint":"https://api.balena-cloud.com","apiKey":"PROVKEY-9c1d8e",` +
			`"applicationId":7,"registered_at":1600000000,"uuid":"ffffffffffffffffffffffffffffffff"}`, nil,
			`{"apiEndpoint":"https://api.balena-cloud.com","apiKey":"PROVKEY-9c1d8e","applicationId":1234567,` +
				`"deltaEndpoint":"https://delta.balena-cloud.com","deviceType":"raspberrypi4-64","listenPort":48484,` +
				`"registered_at":1700000000,"registryEndpoint":"registry2.balena-cloud.com",` +
				`"uuid":"ffffffffffffffffffffffffffffffff","vpnEndpoint":"vpn.balena-cloud.com","vpnPort":443}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.config))
			if err != nil {
				t.Fatal(err)
			}
			p := testProvisioning()
			if tc.edit != nil {
				tc.edit(&p)
			}
			if err := c.Provision(p); err != nil {
				t.Fatal(err)
			}
			if got := string(c.Encode()); got != tc.want {
				t.Fatalf("config\n got %s\nwant %s", got, tc.want)
			}
			// A second identical run (another time, another random source) changes nothing.
			first := string(c.Encode())
			p2 := testProvisioning()
			if tc.edit != nil {
				tc.edit(&p2)
			}
			p2.RegisteredAt = 1800000000
			p2.Rand = bytes.NewReader(bytes.Repeat([]byte{0x11}, 16))
			if err := c.Provision(p2); err != nil {
				t.Fatal(err)
			}
			if again := string(c.Encode()); again != first {
				t.Fatalf("second run changed the config:\n%s\n%s", first, again)
			}
		})
	}
}

func TestProvisionErrors(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		edit    func(*Provisioning)
		wantErr string
	}{
		{"empty key", `{}`, func(p *Provisioning) { p.APIKey = "" }, "provisioning key is empty"},
		{"key with newline", `{}`, func(p *Provisioning) { p.APIKey = testProvKey + "\n" }, "white space or control"},
		{"fleet 0", `{}`, func(p *Provisioning) { p.FleetID = 0 }, "fleet id 0: a positive number is required"},
		{"negative fleet", `{}`, func(p *Provisioning) { p.FleetID = -3 }, "fleet id -3"},
		{"ftp endpoint", `{}`, func(p *Provisioning) { p.APIEndpoint = "ftp://api.example.org" }, "an https:// (or http://) URL is required"},
		{"no scheme", `{}`, func(p *Provisioning) { p.APIEndpoint = "api.example.org" }, "an https:// (or http://) URL is required"},
		{"not api host", `{}`, func(p *Provisioning) { p.APIEndpoint = "https://balena.example.org" }, "a standard api.<domain> endpoint is required"},
		{"bare api host", `{}`, func(p *Provisioning) { p.APIEndpoint = "https://api." }, "a standard api.<domain> endpoint is required"},
		{"ip host", `{}`, func(p *Provisioning) { p.APIEndpoint = "https://10.0.0.1" }, "a standard api.<domain> endpoint"},
		{"path", `{}`, func(p *Provisioning) { p.APIEndpoint = "https://api.example.org/v6" }, "without port, path or query"},
		{"port", `{}`, func(p *Provisioning) { p.APIEndpoint = "https://api.example.org:8443" }, "without port, path or query"},
		{"user info", `{}`, func(p *Provisioning) { p.APIEndpoint = "https://u:pw@api.example.org" }, "without port, path or query"},
		{"not a url", `{}`, func(p *Provisioning) { p.APIEndpoint = "https://api.example.org/%zz" }, "is not a URL"},
		{"bad given uuid", `{}`, func(p *Provisioning) { p.UUID = "ABC" }, `uuid "ABC": 3 characters`},
		{"bad present uuid", `{"uuid":"not-a-uuid"}`, nil, "config.json uuid \"not-a-uuid\""},
		{"present uuid not a string", `{"uuid":5}`, nil, "config.json uuid is a number"},
		{"no device type", `{}`, func(p *Provisioning) { p.DeviceType = "" }, "device type is required"},
		{"name with newline", `{}`, func(p *Provisioning) { p.InitialDeviceName = "a\nb" }, "control character"},
		{"no randomness", `{}`, func(p *Provisioning) { p.Rand = bytes.NewReader(nil) }, "device uuid: reading random bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.config))
			if err != nil {
				t.Fatal(err)
			}
			before := string(c.Encode())
			p := testProvisioning()
			if tc.edit != nil {
				tc.edit(&p)
			}
			err = c.Provision(p)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), testProvKey) {
				t.Fatalf("error shows the provisioning key: %v", err)
			}
			if after := string(c.Encode()); after != before {
				t.Fatalf("failed Provision changed the config:\n%s\n%s", before, after)
			}
		})
	}
}

func TestProvisionDefaults(t *testing.T) {
	var c Config
	p := testProvisioning()
	p.RegisteredAt = 0
	p.Rand = nil
	if err := c.Provision(p); err != nil {
		t.Fatal(err)
	}
	uuid, _ := c.String("uuid")
	if err := ValidateUUID(uuid); err != nil {
		t.Fatalf("generated uuid: %v", err)
	}
	v, _ := c.Get("registered_at")
	n, _ := v.(json.Number)
	if at, err := n.Int64(); err != nil || at < time.Now().Unix()-60 {
		t.Fatalf("registered_at %v is not the current time", v)
	}
}
