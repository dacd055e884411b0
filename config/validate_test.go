package config

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"
)

func TestValidateHostname(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"a", ""},
		{"balena", ""},
		{"My-Device-01", ""},
		{"0123456", ""},
		{strings.Repeat("a", 63), ""},
		{"x-1-y", ""},

		{"", "hostname is empty"},
		{strings.Repeat("a", 64), "64 characters, at most 63"},
		{"a_b", `hostname "a_b": only letters, digits and hyphens are allowed`},
		{"a b", "only letters, digits and hyphens"},
		{"héllo", "only letters, digits and hyphens"},
		{"a\nb", "only letters, digits and hyphens"},
		{"-a", "must not start or end with a hyphen"},
		{"a-", "must not start or end with a hyphen"},
		{"-", "must not start or end with a hyphen"},
		{"dev.local", "a single label without dots"},
		{"a.", "a single label without dots"},
	}
	for _, tc := range tests {
		err := ValidateHostname(tc.in)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateHostname(%q) = %v", tc.in, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ValidateHostname(%q) = %v, want an error containing %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestValidateCountry(t *testing.T) {
	for _, ok := range []string{"GB", "us", "De", "zz"} {
		if err := ValidateCountry(ok); err != nil {
			t.Errorf("ValidateCountry(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "G", "GBR", "G1", "00", "É1", "ÉS", "g ", " g"} {
		err := ValidateCountry(bad)
		if err == nil || !strings.Contains(err.Error(), "two-letter ISO 3166-1 code") {
			t.Errorf("ValidateCountry(%q) = %v, want an error", bad, err)
		}
	}
}

func TestValidateUUID(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"0123456789abcdef0123456789abcdef", ""},
		{"ffffffffffffffffffffffffffffffff", ""},
		{"", "0 characters, 32 lower-case hex digits are required"},
		{"0123456789abcdef0123456789abcde", "31 characters"},
		{"0123456789abcdef0123456789abcdef0", "33 characters"},
		{strings.Repeat("0", 62), "62 characters"},
		{"0123456789ABCDEF0123456789abcdef", "only lower-case hex digits"},
		{"0123456789abcdef0123456789abcdeg", "only lower-case hex digits"},
		{"01234567-89ab-cdef-0123-456789ab", "only lower-case hex digits"},
	}
	for _, tc := range tests {
		err := ValidateUUID(tc.in)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateUUID(%q) = %v", tc.in, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ValidateUUID(%q) = %v, want an error containing %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestNewDeviceUUID(t *testing.T) {
	src := bytes.NewReader(append(bytes.Repeat([]byte{0xab}, 15), 0x01, 0xff))
	got, err := NewDeviceUUID(src)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("ab", 15) + "01"; got != want {
		t.Fatalf("NewDeviceUUID = %q, want %q", got, want)
	}
	if err := ValidateUUID(got); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDeviceUUID(bytes.NewReader(make([]byte, 15))); err == nil || !strings.Contains(err.Error(), "device uuid: reading random bytes") {
		t.Fatalf("short source: %v", err)
	}
	if _, err := NewDeviceUUID(iotest.ErrReader(iotest.ErrTimeout)); err == nil {
		t.Fatal("failing source: no error")
	}
}
