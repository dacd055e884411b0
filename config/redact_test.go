package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// TestRedactEverySecretKey puts a distinct value under every secret key balena's config.json can hold
// (SecretKeys), as a string, a number, inside an object and inside an array, at the top and nested,
// and under names only the pattern catches; none may survive Redact, and public data stays.
func TestRedactEverySecretKey(t *testing.T) {
	keys := append([]string{}, SecretKeys...)
	// Names the pattern must catch, in every case, at any depth.
	keys = append(keys, "registryToken", "vpnPassword", "WIFI_PSK", "clientSecret", "awsCredentials",
		"privateKeyPem", "passphrase", "PASSWD", "api_key", "wpaKey", "APIKEY")
	m := map[string]any{"hostname": "keep-host", "os": map[string]any{"sshKeys": []any{"ssh-ed25519 AAAAkeep"}}}
	var secrets []string
	for i, k := range keys {
		s := func(where string) string {
			v := fmt.Sprintf("SECRET-%d-%s", i, where)
			secrets = append(secrets, v)
			return v
		}
		m[k] = s("top")
		nested := map[string]any{k: s("nested")}
		m[fmt.Sprintf("plain%d", i)] = map[string]any{"deeper": nested, "list": []any{map[string]any{k: s("in-array")}}}
		m[fmt.Sprintf("map%d", i)] = map[string]any{k: map[string]any{"api.example.com": s("map")}}
		m[fmt.Sprintf("list%d", i)] = map[string]any{k: []any{s("list"), []any{s("list-nested")}, 42}}
	}
	m["deviceApiKeys"] = map[string]any{"api.balena-cloud.com": "SECRET-map-host1", "api.example.org": map[string]any{"k": "SECRET-map-host2"}}
	secrets = append(secrets, "SECRET-map-host1", "SECRET-map-host2")
	c, err := configFromGo(m)
	if err != nil {
		t.Fatal(err)
	}
	out := string(Redact(c).Encode())
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("secret %s survives", s)
		}
	}
	if strings.Contains(out, "SECRET") {
		t.Errorf("a secret survives in %s", out)
	}
	for _, keep := range []string{"keep-host", "ssh-ed25519 AAAAkeep", "api.balena-cloud.com", "api.example.org"} {
		if !strings.Contains(out, keep) {
			t.Errorf("public %q lost", keep)
		}
	}
	for _, k := range SecretKeys {
		if !IsSecretKey(k) || !IsSecretKey(strings.ToUpper(k)) {
			t.Errorf("IsSecretKey(%q) = false", k)
		}
	}
	for _, k := range []string{"hostname", "uuid", "deviceType", "sshKeys", "apiEndpoint", "applicationId", "wifiSsid", "balenaRootCA"} {
		if IsSecretKey(k) {
			t.Errorf("IsSecretKey(%q) = true", k)
		}
	}
}
