package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// setting is the check and normal form of one config.json key balenaOS gives a type and a meaning.
type setting func(v any) (any, error)

// settings are the typed keys, by dotted path. configure's flags (--hostname, --uuid, --country, --dns,
// ...) and `config write`/`config inject` go through the same check, so neither accepts what the other
// refuses.
var settings = map[string]setting{
	"hostname":              stringSetting(func(s string) (string, error) { return s, ValidateHostname(s) }),
	"uuid":                  stringSetting(func(s string) (string, error) { return s, ValidateUUID(s) }),
	"country":               stringSetting(func(s string) (string, error) { return strings.ToUpper(s), ValidateCountry(s) }),
	"dnsServers":            nullable(stringSetting(func(s string) (string, error) { return Servers("dns", s) })),
	"ntpServers":            stringSetting(func(s string) (string, error) { return Servers("ntp", s) }),
	"apiKey":                stringSetting(checkAPIKey),
	"initialDeviceName":     stringSetting(checkDeviceName),
	"deviceType":            stringSetting(checkSlug),
	"persistentLogging":     boolSetting,
	"developmentMode":       boolSetting,
	"applicationId":         intSetting(1, math.MaxInt64),
	"userId":                intSetting(1, math.MaxInt64),
	"deviceId":              intSetting(1, math.MaxInt64),
	"registered_at":         intSetting(0, math.MaxInt64),
	"appUpdatePollInterval": intSetting(1, math.MaxInt64),
	"listenPort":            intSetting(1, 65535),
	"vpnPort":               intSetting(1, 65535),
	"os.sshKeys":            sshKeysSetting,
	"os.udevRules":          udevRulesSetting,
}

// NormalizeSetting checks value for the dotted config.json key and returns it in the form config.json
// stores (country upper-case, server lists single-spaced). Keys without a type are returned unchanged.
// Errors name the key and never hold a secret value.
func NormalizeSetting(key string, value any) (any, error) {
	check, ok := settings[key]
	if !ok {
		return value, nil
	}
	v, err := check(value)
	if err != nil {
		return nil, fmt.Errorf("config key %s: %w", key, err)
	}
	return v, nil
}

// NormalizeChanged runs NormalizeSetting on every typed key of c whose value differs from old's (set,
// merged or injected since old was read), storing the normal form. Values old already held are left
// as they are, whatever wrote them. On error c may be partly normalized; callers discard it.
func NormalizeChanged(old Config, c *Config) error {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		path := strings.Split(k, ".")
		v, ok := c.GetPath(path...)
		if !ok {
			continue
		}
		if was, ok := old.GetPath(path...); ok && reflect.DeepEqual(was, v) {
			continue
		}
		norm, err := NormalizeSetting(k, v)
		if err != nil {
			return err
		}
		if err := c.SetPath(norm, path...); err != nil {
			return err
		}
	}
	return nil
}

// nullable also accepts JSON null: dnsServers null (like the string "null") disables balenaOS's DNS
// fallback, as jq -r reads both the same way.
func nullable(check setting) setting {
	return func(v any) (any, error) {
		if v == nil {
			return nil, nil
		}
		return check(v)
	}
}

func stringSetting(check func(string) (string, error)) setting {
	return func(v any) (any, error) {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s given, a string is required", jsonKind(v))
		}
		return check(s)
	}
}

func boolSetting(v any) (any, error) {
	if _, ok := v.(bool); !ok {
		return nil, fmt.Errorf("%s given, true or false is required", jsonKind(v))
	}
	return v, nil
}

// intSetting accepts a whole number in [lo, hi], as a JSON number or as a string of decimal digits
// (balena's older tools write applicationId and userId as strings); the type given is kept.
func intSetting(lo, hi int64) setting {
	return func(v any) (any, error) {
		var text string
		switch n := v.(type) {
		case json.Number:
			text = n.String()
		case string:
			text = n
		default:
			return nil, fmt.Errorf("%s given, a number is required", jsonKind(v))
		}
		i, err := strconv.ParseInt(text, 10, 64)
		if err != nil || i < lo || i > hi || text != strconv.FormatInt(i, 10) {
			return nil, fmt.Errorf("%q: a whole number from %d to %d is required", text, lo, hi)
		}
		return v, nil
	}
}

func sshKeysSetting(v any) (any, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s given, an array of OpenSSH public keys is required", jsonKind(v))
	}
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("entry %d is %s, not a string", i, jsonKind(e))
		}
		keys, err := ParseSSHKeys([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if len(keys) != 1 {
			return nil, fmt.Errorf("entry %d: exactly one public key per entry is required", i)
		}
	}
	return v, nil
}

func udevRulesSetting(v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s given, an object of rule name to rule text is required", jsonKind(v))
	}
	for name, rule := range m {
		if err := CheckUdevRuleName(name); err != nil {
			return nil, err
		}
		s, ok := rule.(string)
		if !ok {
			return nil, fmt.Errorf("udev rule %s is %s, not a string", name, jsonKind(rule))
		}
		if strings.ContainsRune(s, 0) {
			return nil, fmt.Errorf("udev rule %s holds a NUL byte", name)
		}
	}
	return v, nil
}

var udevRuleName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`) })

// CheckUdevRuleName checks the name of an os.udevRules entry (the device writes it as NAME.rules).
func CheckUdevRuleName(name string) error {
	if !udevRuleName().MatchString(name) {
		return fmt.Errorf("udev rule name %q: use letters, digits, '.', '_' and '-', as in 64-usb", name)
	}
	return nil
}

// Servers checks a space-separated list of DNS or NTP servers (host names or addresses; "null" for
// dnsServers disables balena's fallback) and returns it single-spaced. what is "dns" or "ntp".
func Servers(what, s string) (string, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return "", fmt.Errorf("%s servers: empty list", what)
	}
	for _, f := range fields {
		if strings.ContainsFunc(f, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:_[]%", r))
		}) {
			return "", fmt.Errorf("%s server %q: not a host name or address", what, f)
		}
	}
	return strings.Join(fields, " "), nil
}

// checkAPIKey refuses an empty provisioning key or one holding white space; the key never appears in
// the error.
func checkAPIKey(s string) (string, error) {
	if s == "" {
		return "", errors.New("provisioning key is empty")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return "", errors.New("provisioning key holds white space or control characters")
	}
	return s, nil
}

func checkDeviceName(s string) (string, error) {
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "", fmt.Errorf("device name %q holds a control character", s)
	}
	return s, nil
}

func checkSlug(s string) (string, error) {
	if len(s) > 128 || !slugPattern().MatchString(s) {
		return "", fmt.Errorf("device type %q: a device-type slug such as raspberrypi4-64 is required", s)
	}
	return s, nil
}
