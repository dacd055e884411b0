package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestNormalizeSetting: every typed key refuses what its configure flag refuses, whatever the JSON type,
// and stores the normal form.
func TestNormalizeSetting(t *testing.T) {
	num := func(s string) any { return json.Number(s) }
	cases := []struct {
		key  string
		in   any
		want any    // nil: an error is expected
		err  string // part of the error
	}{
		{"hostname", "line-7", "line-7", ""},
		{"hostname", "bad_name", nil, "only letters, digits and hyphens"},
		{"hostname", "a.b", nil, "single label"},
		{"hostname", "-x", nil, "hyphen"},
		{"hostname", strings.Repeat("a", 64), nil, "at most 63"},
		{"hostname", "\x1b[31mred", nil, "only letters"},
		{"hostname", num("123"), nil, "a number given, a string is required"},
		{"hostname", true, nil, "a string is required"},
		{"uuid", "0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef", ""},
		{"uuid", "0123456789ABCDEF0123456789abcdef", nil, "lower-case hex"},
		{"uuid", "short", nil, "32 lower-case"},
		{"country", "de", "DE", ""},
		{"country", "DEU", nil, "two-letter"},
		{"dnsServers", " 1.1.1.1   9.9.9.9 ", "1.1.1.1 9.9.9.9", ""},
		{"dnsServers", "null", "null", ""},
		{"dnsServers", "1.1.1.1;rm", nil, "not a host name"},
		{"dnsServers", "", nil, "empty list"},
		{"dnsServers", nil, nil, ""},
		{"ntpServers", nil, nil, "a string is required"},
		{"ntpServers", "pool.ntp.org", "pool.ntp.org", ""},
		{"ntpServers", "a\nb c$", nil, "not a host name"},
		{"persistentLogging", true, true, ""},
		{"persistentLogging", "true", nil, "true or false is required"},
		{"developmentMode", num("1"), nil, "true or false"},
		{"applicationId", num("1234567"), num("1234567"), ""},
		{"applicationId", num("-1"), nil, "whole number"},
		{"applicationId", num("1.5"), nil, "whole number"},
		{"applicationId", "1234", "1234", ""},
		{"applicationId", "12a", nil, "whole number"},
		{"applicationId", "01234", nil, "whole number"},
		{"applicationId", true, nil, "a number is required"},
		{"listenPort", num("70000"), nil, "1 to 65535"},
		{"apiKey", "abc", "abc", ""},
		{"apiKey", "SECRET WITH SPACE", nil, "white space"},
		{"apiKey", "", nil, "empty"},
		{"initialDeviceName", "line 7", "line 7", ""},
		{"initialDeviceName", "a\x07b", nil, "control character"},
		{"deviceType", "raspberrypi4-64", "raspberrypi4-64", ""},
		{"deviceType", "Raspberry Pi", nil, "slug"},
		{"os.sshKeys", []any{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPnUgeUH1kjifcsch3u997KHN3QPn1BxmWqyhWxgq4PA c"}, nil, ""},
		{"os.sshKeys", []any{"not a key"}, nil, "entry 0"},
		{"os.sshKeys", "ssh-ed25519 AAAA", nil, "an array"},
		{"os.udevRules", map[string]any{"64-usb": "ACTION==\"add\""}, map[string]any{"64-usb": "ACTION==\"add\""}, ""},
		{"os.udevRules", map[string]any{"../x": "r"}, nil, "udev rule name"},
		{"os.udevRules", map[string]any{"x": num("1")}, nil, "not a string"},
		{"custom.anything", "\x00 anything", "\x00 anything", ""},
	}
	for _, c := range cases {
		got, err := NormalizeSetting(c.key, c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s=%q: error %v, want one containing %q", c.key, c.in, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s=%q: %v", c.key, c.in, err)
		case c.err == "" && c.want != nil && string(EncodeValue(got)) != string(EncodeValue(c.want)):
			t.Errorf("%s=%q: got %v, want %v", c.key, c.in, got, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error holds the secret: %v", err)
		}
	}
}

// TestNormalizeChanged checks only what changed: a value already in config.json is left alone, a new
// or changed one is checked and normalized.
func TestNormalizeChanged(t *testing.T) {
	old, err := ParseConfig([]byte(`{"hostname":"legacy_name","country":"gb","os":{"sshKeys":[]}}`))
	if err != nil {
		t.Fatal(err)
	}
	c := old.Clone()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Set("country", "de"))
	must(NormalizeChanged(old, &c))
	if got := string(c.Encode()); got != `{"country":"DE","hostname":"legacy_name","os":{"sshKeys":[]}}` {
		t.Errorf("got %s", got)
	}
	must(c.Set("os", map[string]any{"udevRules": map[string]any{"bad/name": "x"}}))
	if err := NormalizeChanged(old, &c); err == nil || !strings.Contains(err.Error(), "os.udevRules") {
		t.Errorf("udev rule name through a parent object: %v", err)
	}
}

// TestParseRefusesInvalidUTF8: invalid UTF-8 anywhere in config.json or a config write value is refused
// with its byte offset instead of becoming U+FFFD, and syntax errors never quote the document.
func TestParseRefusesInvalidUTF8(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
	}{
		{"{\"apiKey\":\"ab\xffc\"}", "invalid UTF-8 at byte 13"},
		{"{\"k\xc3\":1}", "invalid UTF-8 at byte 3"},
		{"{\"ok\":\"caf\xc3\xa9\",\"bad\":\"\xed\xa0\x80\"}", "invalid UTF-8 at byte 21"},
		{`{"apiKey":"SECRETVALUE" junk}`, "syntax error at byte"},
	} {
		_, err := ParseConfig([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("ParseConfig(%q): %v, want %q", c.in, err, c.want)
		}
	}
	if _, err := ParseValue("a\xffb", false); err == nil || !strings.Contains(err.Error(), "byte 1") {
		t.Errorf("ParseValue: %v", err)
	}
	if _, err := ParseValue("a\xffb", true); err == nil {
		t.Error("ParseValue --string accepted invalid UTF-8")
	}
	if c, err := ParseConfig([]byte("{\"ok\":\"caf\xc3\xa9 \\ufffd\"}")); err != nil || !strings.Contains(string(c.Encode()), "café \ufffd") {
		t.Errorf("valid UTF-8 and an escaped U+FFFD: %v", err)
	}
}

// TestParseRefusesLoneSurrogates: a \u escape of half a UTF-16 pair would decode to U+FFFD silently.
func TestParseRefusesLoneSurrogates(t *testing.T) {
	for in, want := range map[string]int{
		`{"a":"x\ud800"}`:         7,
		`{"a":"\udc00y"}`:         6,
		`{"a":"\ud800\u0041"}`:    6,
		`{"\\\ud800":1}`:          4,
		`{"a":"\\ud800"}`:         -1, // an escaped backslash, then text
		`{"a":"\ud83d\ude00 ok"}`: -1, // a pair: U+1F600
		`{"a":"\u00e9\"\\"}`:      -1,
	} {
		_, err := ParseConfig([]byte(in))
		if want < 0 {
			if err != nil {
				t.Errorf("%s: %v", in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("surrogate at byte %d", want)) {
			t.Errorf("%s: %v, want byte %d", in, err, want)
		}
	}
}
