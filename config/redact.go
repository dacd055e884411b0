package config

import "regexp"

// Redacted replaces secret values in the output of Redact.
const Redacted = "<redacted>"

// secretKey matches the names of config.json keys whose values are secrets: apiKey (provisioning key),
// deviceApiKey, deviceApiKeys (a map of them), and anything named like a token, secret, password or
// Wi-Fi psk.
var secretKey = regexp.MustCompile(`(?i)apikey|token|secret|password|psk`)

// Redact returns a copy of c safe to print: every value under a secret-named key, at any depth, is
// replaced by "<redacted>". Under a secret-named object or array (deviceApiKeys) the structure and the
// keys stay and every non-null leaf is replaced. c is not modified.
func Redact(c Config) Config {
	return Config{m: redactObject(c.object(), false)}
}

func redactObject(m map[string]any, secret bool) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = redactValue(v, secret || secretKey.MatchString(k))
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
