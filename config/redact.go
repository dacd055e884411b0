package config

import (
	"regexp"
	"strings"
	"sync"
)

// Redacted replaces secret values in the output of Redact.
const Redacted = "<redacted>"

// SecretKeys are the config.json keys balena's own software defines whose values are secrets, and where
// each comes from:
//
//   - apiKey: the fleet provisioning key (balena-supervisor src/config/schema.ts; balena-cli
//     src/utils/config.ts ImgConfig). Whoever holds it can add devices to the fleet.
//   - deviceApiKey: the device's own API key (balena-supervisor schema; balena-cli populateDeviceConfig;
//     os-config src/config_json.rs).
//   - deviceApiKeys: a map from API endpoint host to device API key (os-config src/config_json.rs,
//     written by `os-config join`).
//   - mixpanelToken: the analytics token (balena-supervisor schema; balena-cli ImgConfig).
//   - pubnubSubscribeKey, pubnubPublishKey: the log channel keys of older balenaOS config.json files
//     (balena-migrate's BalenaConfig; older balena-supervisor and balena-sdk os.getConfig).
//   - wifiKey: the Wi-Fi passphrase balena-cli `config generate --network wifi` and etcher-sdk's
//     configure step accept beside wifiSsid (balena-cli ImgConfig; balena-device-config get()).
//   - files: file contents of resinOS 1.x images (balena-device-config network.getFiles), whose
//     network/network.config carries the Wi-Fi Passphrase.
//
// Every other key whose name looks like a secret (see secretPattern) is redacted too.
var SecretKeys = []string{
	"apiKey", "deviceApiKey", "deviceApiKeys", "mixpanelToken", "pubnubSubscribeKey", "pubnubPublishKey",
	"wifiKey", "files",
}

// secretPattern matches key names that look like secrets at any depth: anything named like a key,
// token, secret, password, passphrase, Wi-Fi psk, credential or private key.
var secretPattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)key|token|secret|passw|passphrase|psk|credential|private`)
})

// publicKeys are names the pattern matches that hold public data, shown so that they can be checked:
// os.sshKeys are OpenSSH public keys.
var publicKeys = map[string]bool{"sshKeys": true}

// IsSecretKey reports whether a config.json key name (one path segment, at any depth) holds a secret.
func IsSecretKey(name string) bool {
	for _, k := range SecretKeys {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return secretPattern().MatchString(name) && !publicKeys[name]
}

// Redact returns a copy of c safe to print: every value under a secret key (IsSecretKey), at any depth
// and inside arrays, is replaced by "<redacted>". Under a secret-named object or array (deviceApiKeys)
// the structure and the keys stay and every non-null leaf is replaced. c is not modified.
func Redact(c Config) Config {
	return Config{m: redactObject(c.object(), false)}
}

func redactObject(m map[string]any, secret bool) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = redactValue(v, secret || IsSecretKey(k))
	}
	return out
}

func redactValue(v any, secret bool) any {
	switch v := v.(type) {
	case map[string]any:
		return redactObject(v, secret)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = redactValue(e, secret)
		}
		return out
	case nil:
		return nil
	default:
		if secret {
			return Redacted
		}
		return v
	}
}
