package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ValidateHostname checks a device hostname (config.json hostname): an RFC 1123 label of 1 to 63
// letters, digits and hyphens, not starting or ending with a hyphen. The device advertises it as
// <hostname>.local.
func ValidateHostname(s string) error {
	switch {
	case s == "":
		return errors.New("hostname is empty")
	case len(s) > 63:
		return fmt.Errorf("hostname %q: %d characters, at most 63 are allowed", s, len(s))
	case strings.Contains(s, "."):
		return fmt.Errorf("hostname %q: a single label without dots is required (the device adds .local)", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isASCIILetter(c) && !('0' <= c && c <= '9') && c != '-' {
			return fmt.Errorf("hostname %q: only letters, digits and hyphens are allowed", s)
		}
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return fmt.Errorf("hostname %q: must not start or end with a hyphen", s)
	}
	return nil
}

func isASCIILetter(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// ValidateCountry checks a Wi-Fi regulatory country code: two ASCII letters, the shape of an ISO
// 3166-1 alpha-2 code. Either case is accepted; config.json stores it upper-case.
func ValidateCountry(s string) error {
	if len(s) != 2 || !isASCIILetter(s[0]) || !isASCIILetter(s[1]) {
		return fmt.Errorf("country %q: a two-letter ISO 3166-1 code such as GB or US is required", s)
	}
	return nil
}

// ValidateUUID checks a balena device uuid: 32 lower-case hex digits.
func ValidateUUID(s string) error {
	if len(s) != 32 {
		return fmt.Errorf("uuid %q: %d characters, 32 lower-case hex digits are required", s, len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9') && !('a' <= c && c <= 'f') {
			return fmt.Errorf("uuid %q: only lower-case hex digits (0-9, a-f) are allowed", s)
		}
	}
	return nil
}

// NewDeviceUUID reads 16 bytes from r (crypto/rand.Reader in practice) and returns them as a device
// uuid: 32 lower-case hex digits, as balenaOS generates one on first boot.
func NewDeviceUUID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("device uuid: reading random bytes: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
