package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// sshKeyTypes are the public key types OpenSSH's sshd accepts in authorized_keys.
var sshKeyTypes = map[string]bool{
	sshKeyRSA:        true,
	sshKeyECDSA256:   true,
	sshKeyECDSA384:   true,
	sshKeyECDSA521:   true,
	sshKeyEd25519:    true,
	sshKeySKECDSA256: true,
	sshKeySKEd25519:  true,
}

// minRSABits is OpenSSH's default RequiredRSASize: sshd refuses smaller RSA keys.
const minRSABits = 1024

// ParseSSHKeys parses one OpenSSH public key or an authorized_keys file: blank lines and '#' comment
// lines are skipped, and a key may be preceded by options (from="…",no-pty). Each key is returned
// normalised as "[options ]type base64[ comment]"; options are kept, since dropping a
// from= or command= restriction would widen the key's access. The declared type must match the key
// data, and only key types current OpenSSH accepts are taken (RSA of at least 1024 bits, ECDSA,
// Ed25519 and their security-key variants; not DSA, not certificates). Errors name the line; no
// key at all is an error too.
func ParseSSHKeys(data []byte) ([]string, error) {
	var keys []string
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.Trim(strings.TrimSuffix(line, "\r"), " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		key, err := parseSSHKeyLine(line)
		if err != nil {
			return nil, fmt.Errorf("ssh key line %d: %w", n+1, err)
		}
		keys = append(keys, key.normal())
	}
	if len(keys) == 0 {
		return nil, errors.New("no ssh public key found")
	}
	return keys, nil
}

type sshKey struct {
	options string // authorized_keys options (from="…",no-pty), kept: dropping them would widen access
	pub     sshPublicKey
	comment string
}

// id identifies the key regardless of comment: "type base64".
func (k sshKey) id() string {
	return k.pub.typ + " " + base64.StdEncoding.EncodeToString(k.pub.blob)
}

func (k sshKey) normal() string {
	s := k.id()
	if k.options != "" {
		s = k.options + " " + s
	}
	if k.comment != "" {
		s += " " + k.comment
	}
	return s
}

// parseSSHKeyLine parses one authorized_keys line, trimmed and not a comment: "[options ]type
// base64[ comment]". Like sshd, it first reads the line as starting with the key type and, when
// the first field is no key type, skips an options field (commas separate options; quoted strings
// may hold spaces).
func parseSSHKeyLine(line string) (sshKey, error) {
	if strings.HasPrefix(line, "-----BEGIN") || strings.HasPrefix(line, "PuTTY-User-Key-File") {
		return sshKey{}, errors.New("this is a private key or PEM block; give the OpenSSH public key (the .pub file)")
	}
	if strings.HasPrefix(line, "---- BEGIN SSH2 PUBLIC KEY") {
		return sshKey{}, errors.New("RFC 4716 (SSH2) public key; convert it with ssh-keygen -i -f FILE")
	}
	typ, _, _ := strings.Cut(strings.TrimLeft(line, " \t"), " ")
	typ, _, _ = strings.Cut(typ, "\t")
	var options string
	if !looksLikeKeyType(typ) {
		rest, ok := skipSSHOptions(line)
		if !ok {
			return sshKey{}, errors.New("no key type found (options not closed by a quote?)")
		}
		options = strings.TrimRight(line[:len(line)-len(rest)], " \t")
		line = rest
	}
	fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(fields) == 0 || !looksLikeKeyType(fields[0]) {
		return sshKey{}, errors.New("no key type found; expected a public key such as \"ssh-ed25519 AAAA… comment\"")
	}
	typ = fields[0]
	switch {
	case typ == "ssh-dss":
		return sshKey{}, errors.New("ssh-dss (DSA) keys are no longer accepted by OpenSSH")
	case strings.Contains(typ, "-cert-"):
		return sshKey{}, fmt.Errorf("%s is a certificate, not a public key", typ)
	case !sshKeyTypes[typ]:
		return sshKey{}, fmt.Errorf("key type %q is not supported (ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa and their sk- variants are)", typ)
	case len(fields) < 2:
		return sshKey{}, fmt.Errorf("%s key: key data missing", typ)
	}
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return sshKey{}, fmt.Errorf("%s key: key data is not valid base64", typ)
	}
	if got, ok := sshWireKeyType(blob); ok && got == "" {
		return sshKey{}, fmt.Errorf("%s key: the key data names no key type", typ)
	} else if ok && got != typ {
		return sshKey{}, fmt.Errorf("%s key: the key data holds a %s key", typ, printableWireString([]byte(got)))
	}
	pub, err := parseSSHPublicKey(blob)
	if err != nil {
		return sshKey{}, fmt.Errorf("%s key: key data is corrupt or truncated (%w)", typ, err)
	}
	if pub.typ == sshKeyRSA && pub.rsaBits < minRSABits {
		return sshKey{}, fmt.Errorf("%s key of %d bits: OpenSSH requires at least %d", typ, pub.rsaBits, minRSABits)
	}
	// The comment is what follows the key data, inner spacing kept.
	after := strings.TrimLeft(line[len(typ):], " \t")[len(fields[1]):]
	return sshKey{options: options, pub: pub, comment: strings.Trim(after, " \t")}, nil
}

// looksLikeKeyType reports whether s is shaped like an SSH key type name ("ssh-ed25519",
// "ecdsa-sha2-nistp256", "sk-ssh-ed25519@openssh.com", "ssh-rsa-cert-v01@openssh.com"), as
// opposed to an authorized_keys option ("no-pty", "from=\"…\"", "restrict,command=\"…\"").
func looksLikeKeyType(s string) bool {
	if strings.ContainsAny(s, "=,\"") {
		return false
	}
	for _, p := range []string{"ssh-", "ecdsa-", "sk-", "rsa-", "x509v3-"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// skipSSHOptions returns what follows the options field: everything up to the first space or tab
// outside double quotes (a backslash escapes a quote inside them).
func skipSSHOptions(line string) (string, bool) {
	inQuote := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && inQuote && i+1 < len(line):
			i++
		case c == '"':
			inQuote = !inQuote
		case (c == ' ' || c == '\t') && !inQuote:
			return strings.TrimLeft(line[i:], " \t"), true
		}
	}
	return "", false
}

// AddSSHKeys appends keys (each as ParseSSHKeys accepts one line) to os.sshKeys, creating os and
// os.sshKeys as needed, and skips a key whose type and key data are already there, under any
// comment or options. Entries already present stay as they are; new ones are written normalised. It
// reports whether c changed. os must be an object and os.sshKeys an array of strings; nothing is
// changed on error.
func AddSSHKeys(c *Config, keys []string) (changed bool, err error) {
	var list []any
	if v, ok := c.GetPath("os"); ok {
		if _, isObj := v.(map[string]any); !isObj {
			return false, fmt.Errorf("config key os is %s, not an object", jsonKind(v))
		}
	}
	if v, ok := c.GetPath("os", "sshKeys"); ok {
		if list, ok = v.([]any); !ok {
			return false, fmt.Errorf("config key os.sshKeys is %s, not an array of strings", jsonKind(v))
		}
	}
	have := map[string]bool{}
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return false, fmt.Errorf("config key os.sshKeys[%d] is %s, not a string", i, jsonKind(e))
		}
		// An entry this package cannot read stays, and matches nothing.
		if k, err := parseSSHKeyLine(strings.TrimSpace(s)); err == nil {
			have[k.id()] = true
		}
	}
	n := len(list)
	for i, s := range keys {
		s = strings.Trim(s, " \t\r\n")
		if strings.ContainsAny(s, "\r\n") {
			return false, fmt.Errorf("ssh key %d: holds more than one line", i+1)
		}
		k, err := parseSSHKeyLine(s)
		if err != nil {
			return false, fmt.Errorf("ssh key %d: %w", i+1, err)
		}
		if have[k.id()] {
			continue
		}
		have[k.id()] = true
		list = append(list, k.normal())
	}
	if len(list) == n {
		return false, nil
	}
	if err := c.SetPath(list, "os", "sshKeys"); err != nil {
		return false, err
	}
	return true, nil
}
