package config

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestRedactRemovesEverySecret(t *testing.T) {
	secrets := []string{
		"PROVKEY-3f9a", "DEVKEY-77aa", "DEVKEYS-host1", "DEVKEYS-host2", "MIXPANEL-TOKEN-x",
		"hunter2-wifi", "s3cr3t-value", "PSK-in-array", "12345987654321",
	}
	src := `{
		"apiKey": "PROVKEY-3f9a",
		"deviceApiKey": "DEVKEY-77aa",
		"deviceApiKeys": {"api.balena-cloud.com": "DEVKEYS-host1", "api.example.org": "DEVKEYS-host2"},
		"mixpanelToken": "MIXPANEL-TOKEN-x",
		"os": {"network": {"wifiPassword": "hunter2-wifi"}, "sshKeys": ["ssh-ed25519 AAAA keep@me"]},
		"custom": {"clientSecret": "s3cr3t-value", "PSKs": [["PSK-in-array"]]},
		"pinToken": 12345987654321,
		"tokenless": null,
		"uuid": "0123456789abcdef0123456789abcdef",
		"hostname": "keepme"
	}`
	c, err := ParseConfig([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	before := c.Encode()
	out := Redact(c).Encode()
	for _, s := range secrets {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("secret %q survives in %s", s, out)
		}
	}
	for _, keep := range []string{"ssh-ed25519 AAAA keep@me", "0123456789abcdef0123456789abcdef", "keepme",
		"api.balena-cloud.com", "api.example.org", `"tokenless":null`} {
		if !bytes.Contains(out, []byte(keep)) {
			t.Errorf("non-secret %q lost from %s", keep, out)
		}
	}
	if !bytes.Equal(c.Encode(), before) {
		t.Fatal("Redact modified its argument")
	}
	r := Redact(c)
	if v, _ := r.GetPath("deviceApiKeys", "api.example.org"); v != Redacted {
		t.Fatalf("deviceApiKeys entry = %v", v)
	}
}

// TestRedactGolden redacts the provisioned golden input: none of its secret values may remain.
func TestRedactGolden(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "configjson", "provisioned.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	var secrets []string
	for _, key := range [][]string{{"apiKey"}, {"deviceApiKey"}, {"deviceApiKeys", "api.balena-cloud.com"}, {"deviceApiKeys", "api.example.org"}} {
		v, ok := c.GetPath(key...)
		s, isString := v.(string)
		if !ok || !isString || s == "" {
			t.Fatalf("golden input lacks secret %v", key)
		}
		secrets = append(secrets, s)
	}
	out := Redact(c).Encode()
	for _, s := range secrets {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("secret %q survives", s)
		}
	}
}
