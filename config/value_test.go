package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseValue(t *testing.T) {
	n := func(s string) json.Number { return json.Number(s) }
	tests := []struct {
		in      string
		force   bool
		want    any
		wantErr string
	}{
		{"true", false, true, ""},
		{"false", false, false, ""},
		{"null", false, nil, ""},
		{"0", false, n("0"), ""},
		{"-0", false, n("-0"), ""},
		{"48484", false, n("48484"), ""},
		{"1.50", false, n("1.50"), ""},
		{"-2.5e-3", false, n("-2.5e-3"), ""},
		{"1E+9", false, n("1E+9"), ""},
		{"12345678901234567890123", false, n("12345678901234567890123"), ""},
		{`["a",1,true,null]`, false, []any{"a", n("1"), true, nil}, ""},
		{`{"r":"x","n":1.0}`, false, map[string]any{"r": "x", "n": n("1.0")}, ""},
		{`[]`, false, []any{}, ""},
		{`{"a":[{"b":{}}]}`, false, map[string]any{"a": []any{map[string]any{"b": map[string]any{}}}}, ""},
		{`"quoted text"`, false, "quoted text", ""},
		{`"true"`, false, "true", ""},
		{`"\u00e9\n"`, false, "é\n", ""},
		{`""`, false, "", ""},

		{"", false, "", ""},
		{"hello world", false, "hello world", ""},
		{"True", false, "True", ""},
		{" true", false, " true", ""},
		{"true ", false, "true ", ""},
		{"NULL", false, "NULL", ""},
		{"0123", false, "0123", ""},
		{"1.", false, "1.", ""},
		{".5", false, ".5", ""},
		{"+1", false, "+1", ""},
		{"1e", false, "1e", ""},
		{"0x10", false, "0x10", ""},
		{"NaN", false, "NaN", ""},
		{"Infinity", false, "Infinity", ""},
		{"8.8.8.8 1.1.1.1", false, "8.8.8.8 1.1.1.1", ""},
		{`"unterminated`, false, `"unterminated`, ""},
		{`"a" "b"`, false, `"a" "b"`, ""},
		{`"bad \q escape"`, false, `"bad \q escape"`, ""},
		{` [1]`, false, ` [1]`, ""},

		{"true", true, "true", ""},
		{"12", true, "12", ""},
		{"null", true, "null", ""},
		{`[not json`, true, `[not json`, ""},
		{`"q"`, true, `"q"`, ""},

		{"[", false, nil, "not a valid JSON array (unexpected end)"},
		{"[1,]", false, nil, "not a valid JSON array (syntax error at byte 4)"},
		{"{secret}", false, nil, "not a valid JSON object"},
		{"[1] [2]", false, nil, "unexpected data after the value"},
		{"{} x", false, nil, "unexpected data after the value"},
		{"[01]", false, nil, "not a valid JSON array"},
	}
	for _, tc := range tests {
		got, err := ParseValue(tc.in, tc.force)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseValue(%q) error %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseValue(%q) error shows the value: %v", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseValue(%q, %v): %v", tc.in, tc.force, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseValue(%q, %v) = %#v, want %#v", tc.in, tc.force, got, tc.want)
		}
	}
}

// TestParseValueIntoConfig stores parsed values and checks the JSON config.json gets.
func TestParseValueIntoConfig(t *testing.T) {
	var c Config
	for key, s := range map[string]string{
		"persistentLogging":     "true",
		"appUpdatePollInterval": "900000",
		"os.udevRules":          `{"64-x":"ACTION==\"add\""}`,
		"dnsServers":            "null",
		"hostname":              `"007"`,
		"ratio":                 "1.50",
	} {
		v, err := ParseValue(s, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Set(key, v); err != nil {
			t.Fatal(err)
		}
	}
	want := `{"appUpdatePollInterval":900000,"dnsServers":null,"hostname":"007","os":{"udevRules":{"64-x":"ACTION==\"add\""}},"persistentLogging":true,"ratio":1.50}`
	if got := string(c.Encode()); got != want {
		t.Fatalf("config\n got %s\nwant %s", got, want)
	}
}

func TestIsJSONNumber(t *testing.T) {
	for _, s := range []string{"0", "-0", "7", "10", "-123.456e+7", "1e5", "0.0", "0E0"} {
		if !isJSONNumber(s) {
			t.Errorf("isJSONNumber(%q) = false", s)
		}
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Errorf("encoding/json refuses %q: %v", s, err)
		}
	}
	for _, s := range []string{"", "-", "00", "01", "1.", ".1", "1e", "1e+", "--1", "1-", "1.2.3", " 1", "1 ", "0x1", "١"} {
		if isJSONNumber(s) {
			t.Errorf("isJSONNumber(%q) = true", s)
		}
	}
}
