package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Keyfile is a NetworkManager connection file in GLib's key file syntax: groups of key=value pairs.
// It keeps groups and keys in the order they were read or set; comments and blank lines are not
// kept. Values are held as written in the file (escaped), so Encode writes a parsed file's values
// back byte for byte, list values (dns=a;b;) and escapes included.
//
// The zero Keyfile is empty and ready to use.
type Keyfile struct {
	groups []*keyfileGroup
}

type keyfileGroup struct {
	name    string
	entries []keyfileEntry
}

type keyfileEntry struct {
	key string
	raw string // the value as it appears after "key=" in the file, still escaped
}

// ParseKeyfile reads a key file as GLib's g_key_file_load_from_data does: lines are split at "\n"
// (one trailing "\r" dropped), leading white space is ignored, and each line is blank, a '#'
// comment, a [group] header (spaces or tabs may follow the ']') or key=value. White space around the
// '=' is dropped; white space at the end of a value is kept, as GLib keeps it. A key=value before
// the first group, an empty or malformed group or key name, a group or key that is not valid UTF-8
// and a NUL byte are errors. A group that appears twice continues the first; a key that appears
// twice keeps its first place and the last value (GLib returns the last value too).
//
// Errors name the line by number only: a malformed line may hold a secret.
func ParseKeyfile(data []byte) (*Keyfile, error) {
	k := &Keyfile{}
	var cur *keyfileGroup
	text := string(data)
	for n := 1; text != ""; n++ {
		line := text
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = ""
		}
		line = strings.TrimSuffix(line, "\r")
		if strings.IndexByte(line, 0) >= 0 {
			return nil, fmt.Errorf("keyfile line %d: contains a NUL byte", n)
		}
		line = strings.TrimLeft(line, gSpace)
		switch {
		case line == "" || line[0] == '#':
			continue
		case line[0] == '[':
			name, err := parseGroupLine(line)
			if err != nil {
				return nil, fmt.Errorf("keyfile line %d: %w", n, err)
			}
			cur = k.group(name, true)
		case strings.IndexByte(line, '=') > 0:
			if cur == nil {
				return nil, fmt.Errorf("keyfile line %d: key=value before the first [group]", n)
			}
			eq := strings.IndexByte(line, '=')
			key := strings.TrimRight(line[:eq], gSpace)
			if err := checkKeyName(key); err != nil {
				return nil, fmt.Errorf("keyfile line %d: %w", n, err)
			}
			cur.set(key, strings.TrimLeft(line[eq+1:], gSpace))
		default:
			return nil, fmt.Errorf("keyfile line %d: not a [group], key=value pair or # comment", n)
		}
	}
	return k, nil
}

// gSpace is the set of GLib's g_ascii_isspace.
const gSpace = " \t\n\v\f\r"

// parseGroupLine returns the name of a "[name]" line. As in GLib, only spaces and tabs may follow
// the first ']'.
func parseGroupLine(line string) (string, error) {
	end := strings.IndexByte(line, ']')
	if end < 0 || strings.Trim(line[end+1:], " \t") != "" {
		return "", errors.New("not a [group] header")
	}
	name := line[1:end]
	switch {
	case name == "":
		return "", errors.New("empty group name")
	case !utf8.ValidString(name):
		return "", errors.New("group name is not valid UTF-8")
	case strings.ContainsAny(name, "[]"):
		return "", fmt.Errorf("group name %q holds '['", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("group name %q holds a control character", name)
		}
	}
	return name, nil
}

// checkKeyName accepts what GLib's g_key_file_is_key_name accepts, valid UTF-8 only: a non-empty
// name without '=', '[' or ']' that neither starts nor ends with a space, optionally followed by a
// locale in brackets (Name[de_DE@euro]).
func checkKeyName(key string) error {
	if !utf8.ValidString(key) {
		return errors.New("key name is not valid UTF-8")
	}
	base, locale, hasLocale := strings.Cut(key, "[")
	switch {
	case base == "":
		return fmt.Errorf("key name %q is empty", key)
	case strings.ContainsAny(base, "=]"):
		return fmt.Errorf("key name %q holds ']'", key)
	case base[0] == ' ' || base[len(base)-1] == ' ':
		return fmt.Errorf("key name %q starts or ends with a space", key)
	}
	if hasLocale {
		locale, ok := strings.CutSuffix(locale, "]")
		if !ok {
			return fmt.Errorf("key name %q: locale not closed by ']'", key)
		}
		for _, r := range locale {
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("-_.@", r) {
				return fmt.Errorf("key name %q: bad locale", key)
			}
		}
	}
	return nil
}

func (k *Keyfile) group(name string, create bool) *keyfileGroup {
	for _, g := range k.groups {
		if g.name == name {
			return g
		}
	}
	if !create {
		return nil
	}
	g := &keyfileGroup{name: name}
	k.groups = append(k.groups, g)
	return g
}

func (g *keyfileGroup) set(key, raw string) {
	for i := range g.entries {
		if g.entries[i].key == key {
			g.entries[i].raw = raw
			return
		}
	}
	g.entries = append(g.entries, keyfileEntry{key: key, raw: raw})
}

// Groups returns the group names in order.
func (k *Keyfile) Groups() []string {
	names := make([]string, len(k.groups))
	for i, g := range k.groups {
		names[i] = g.name
	}
	return names
}

// Keys returns the keys of a group in order; nil when the group is missing.
func (k *Keyfile) Keys(group string) []string {
	g := k.group(group, false)
	if g == nil {
		return nil
	}
	keys := make([]string, len(g.entries))
	for i, e := range g.entries {
		keys[i] = e.key
	}
	return keys
}

// Get returns a value unescaped as g_key_file_get_string does (\s \n \t \r \\). An unknown escape
// such as the list separator's "\;", or a lone '\' at the end, is kept as written (GLib refuses the
// whole value then). ok is false when the group or key is missing.
func (k *Keyfile) Get(group, key string) (string, bool) {
	g := k.group(group, false)
	if g == nil {
		return "", false
	}
	for _, e := range g.entries {
		if e.key == key {
			return unescapeKeyfileValue(e.raw), true
		}
	}
	return "", false
}

// Set stores value under group and key, escaped as g_key_file_set_string escapes it. A new group is
// added after the others, a new key after the group's other keys; an existing key keeps its place.
// group and key are written as given: they must be valid names (see ParseKeyfile).
func (k *Keyfile) Set(group, key, value string) {
	k.group(group, true).set(key, escapeKeyfileValue(value))
}

// setRaw stores an already escaped value (an integer or string list).
func (k *Keyfile) setRaw(group, key, raw string) {
	k.group(group, true).set(key, raw)
}

// Encode writes each group as "[group]\n" and its pairs as "key=value\n", with a blank line between
// groups, as g_key_file_to_data does.
func (k *Keyfile) Encode() []byte {
	var b strings.Builder
	for i, g := range k.groups {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("[" + g.name + "]\n")
		for _, e := range g.entries {
			b.WriteString(e.key + "=" + protectTrailingCR(e.raw) + "\n")
		}
	}
	return []byte(b.String())
}

// protectTrailingCR rewrites a carriage return that ends a raw value read from a file (from a line
// ending "\r\r\n") as the escape `\r`, since a reader drops one carriage return before the newline.
// When an odd run of backslashes precedes it, the last backslash and the carriage return form an
// unknown escape that reads as both characters; they become `\\` and `\r`. Get returns the same
// value either way.
func protectTrailingCR(raw string) string {
	body, ok := strings.CutSuffix(raw, "\r")
	if !ok {
		return raw
	}
	n := len(body) - len(strings.TrimRight(body, `\`))
	if n%2 == 1 {
		return body + `\\r`
	}
	return body + `\r`
}

// escapeKeyfileValue escapes as GLib's g_key_file_set_string (g_key_file_parse_string_as_value
// without list separators): spaces and tabs before the first other character become \s and \t,
// newline and carriage return anywhere become \n and \r, and backslash becomes \\. Everything else,
// '#', ';', '=' and quotes included, is written literally; later spaces and tabs too, since the
// reader keeps them.
func escapeKeyfileValue(s string) string {
	var b strings.Builder
	leading := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ':
			if leading {
				b.WriteString(`\s`)
			} else {
				b.WriteByte(c)
			}
		case '\t':
			if leading {
				b.WriteString(`\t`)
			} else {
				b.WriteByte(c)
			}
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\\':
			b.WriteString(`\\`)
			leading = false
		default:
			b.WriteByte(c)
			leading = false
		}
	}
	return b.String()
}

func unescapeKeyfileValue(raw string) string {
	if !strings.Contains(raw, `\`) {
		return raw
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 == len(raw) {
			b.WriteByte(c)
			continue
		}
		i++
		switch raw[i] {
		case 's':
			b.WriteByte(' ')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\':
			b.WriteByte('\\')
		default:
			b.WriteByte('\\')
			b.WriteByte(raw[i])
		}
	}
	return b.String()
}

// ValidateConnection checks that data is a key file NetworkManager can load as a connection: it
// parses, and its [connection] group has a non-empty id and type.
func ValidateConnection(data []byte) error {
	k, err := ParseKeyfile(data)
	if err != nil {
		return fmt.Errorf("connection file: %w", err)
	}
	if k.group("connection", false) == nil {
		return errors.New("connection file: no [connection] group")
	}
	for _, key := range []string{"id", "type"} {
		if v, _ := k.Get("connection", key); strings.TrimSpace(v) == "" {
			return fmt.Errorf("connection file: [connection] has no %s", key)
		}
	}
	return nil
}

// Default connection names, those balena's tools use.
const (
	DefaultWifiID     = "resin-wifi"
	DefaultEthernetID = "resin-ethernet"
)

// Wifi is a WPA-PSK (or open) Wi-Fi connection with DHCP on IPv4 and automatic IPv6.
type Wifi struct {
	ID     string // connection id; DefaultWifiID when empty
	SSID   string // 1 to 32 bytes, any bytes
	PSK    string // "" for an open network; otherwise see ValidatePSK
	Hidden bool   // the network does not broadcast its SSID
}

// Keyfile returns the connection file, laid out as balena's CLI writes resin-wifi:
//
//	[connection]     id, type=wifi
//	[wifi]           hidden=true (only when Hidden), mode=infrastructure, ssid
//	[wifi-security]  auth-alg=open, key-mgmt=wpa-psk, psk (group left out for an open network)
//	[ipv4]           method=auto
//	[ipv6]           addr-gen-mode=stable-privacy, method=auto
//
// Values are escaped as GLib does; the SSID as NetworkManager writes it (see ssidValue).
func (w Wifi) Keyfile() ([]byte, error) {
	id := w.ID
	if id == "" {
		id = DefaultWifiID
	}
	if err := checkConnectionID(id); err != nil {
		return nil, err
	}
	if len(w.SSID) == 0 {
		return nil, errors.New("wi-fi ssid is empty")
	}
	if len(w.SSID) > 32 {
		return nil, fmt.Errorf("wi-fi ssid %q: %d bytes, at most 32 are allowed", w.SSID, len(w.SSID))
	}
	if w.PSK != "" {
		if err := ValidatePSK(w.PSK); err != nil {
			return nil, err
		}
	}
	var k Keyfile
	k.Set("connection", "id", id)
	k.Set("connection", "type", "wifi")
	if w.Hidden {
		k.Set("wifi", "hidden", "true")
	}
	k.Set("wifi", "mode", "infrastructure")
	k.setRaw("wifi", "ssid", ssidValue([]byte(w.SSID)))
	if w.PSK != "" {
		k.Set("wifi-security", "auth-alg", "open")
		k.Set("wifi-security", "key-mgmt", "wpa-psk")
		k.Set("wifi-security", "psk", w.PSK)
	}
	k.Set("ipv4", "method", "auto")
	k.Set("ipv6", "addr-gen-mode", "stable-privacy")
	k.Set("ipv6", "method", "auto")
	return k.Encode(), nil
}

// ssidValue returns the raw (escaped) keyfile value of an SSID, as NetworkManager's keyfile writer
// (ssid_writer in libnm-core's nm-keyfile.c) writes it. nm-settings-keyfile(5) documents the two
// forms its reader accepts for wifi.ssid: a plain string, or the older list of decimal byte values
// ("ssid=72;101;108;108;111;"). The writer uses the string form when every byte is printable ASCII
// (g_ascii_isprint, 0x20 to 0x7e); it first escapes each ';' as "\;" so that a name such as "12;34;"
// cannot be read back as a byte list, then stores the result with g_key_file_set_string, which
// doubles that backslash like any other: "a;b" is written "ssid=a\\;b". The reader takes the string
// with g_key_file_get_string ("a\;b"), treats it as a byte list only if it matches the digits-and-
// semicolons pattern, and otherwise turns each "\;" back into ';'. Any other byte (non-ASCII UTF-8,
// control characters) makes the writer use the integer list, each byte in decimal followed by ';'
// (g_key_file_set_integer_list): "Café" is "ssid=67;97;102;195;169;".
func ssidValue(ssid []byte) string {
	for _, c := range ssid {
		if c < 0x20 || c > 0x7e {
			var b strings.Builder
			for _, c := range ssid {
				b.WriteString(strconv.Itoa(int(c)))
				b.WriteByte(';')
			}
			return b.String()
		}
	}
	return escapeKeyfileValue(strings.ReplaceAll(string(ssid), ";", `\;`))
}

// ValidatePSK checks a WPA pre-shared key: a passphrase of 8 to 63 printable ASCII characters (0x20
// to 0x7e), or exactly 64 hex digits (the raw key). The key never appears in the error.
func ValidatePSK(psk string) error {
	if len(psk) == 64 {
		for i := 0; i < len(psk); i++ {
			if !isHexDigit(psk[i]) {
				return fmt.Errorf("wi-fi psk of 64 characters: must be 64 hex digits (character %d is not); a passphrase has 8 to 63 characters", i+1)
			}
		}
		return nil
	}
	if len(psk) < 8 || len(psk) > 63 {
		return fmt.Errorf("wi-fi psk of %d bytes: 8 to 63 printable ASCII characters or 64 hex digits are required", len(psk))
	}
	for i := 0; i < len(psk); i++ {
		if psk[i] < 0x20 || psk[i] > 0x7e {
			return fmt.Errorf("wi-fi psk: character %d is not printable ASCII", i+1)
		}
	}
	return nil
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// checkConnectionID requires a connection id NetworkManager accepts: valid UTF-8 without control
// characters.
func checkConnectionID(id string) error {
	if !utf8.ValidString(id) {
		return fmt.Errorf("connection id %q is not valid UTF-8", id)
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("connection id %q holds a control character", id)
		}
	}
	return nil
}

// Ethernet is a wired connection, with a static address or (Address unset) DHCP.
type Ethernet struct {
	ID      string       // connection id; DefaultEthernetID when empty
	Address netip.Prefix // static address and prefix length; unset for DHCP (IPv4) and automatic IPv6
	Gateway netip.Addr   // optional; the same family as Address
	DNS     []netip.Addr // optional name servers, IPv4 and IPv6 mixed
}

// Keyfile returns the connection file:
//
//	[connection]  id, type=ethernet
//	[ethernet]
//	[ipv4]        method=manual, address1=ADDR/PREFIX[,GATEWAY], dns=a;b;  (IPv4 address)
//	              method=auto (no or an IPv6 address)
//	[ipv6]        addr-gen-mode=stable-privacy, method=auto
//	              or method=manual, address1, dns (IPv6 address)
//
// Each name server goes to the group of its family, as NetworkManager requires.
func (e Ethernet) Keyfile() ([]byte, error) {
	id := e.ID
	if id == "" {
		id = DefaultEthernetID
	}
	if err := checkConnectionID(id); err != nil {
		return nil, err
	}
	var dns4, dns6 strings.Builder
	for _, a := range e.DNS {
		if err := checkHostAddr("dns server", a); err != nil {
			return nil, err
		}
		if a.Is4() {
			dns4.WriteString(a.String() + ";")
		} else {
			dns6.WriteString(a.String() + ";")
		}
	}
	var address string
	if e.Address.IsValid() {
		if err := checkHostAddr("address", e.Address.Addr()); err != nil {
			return nil, err
		}
		if e.Address.Bits() == 0 {
			return nil, fmt.Errorf("address %s: prefix length 0", e.Address)
		}
		address = e.Address.String()
		if e.Gateway.IsValid() {
			if err := checkHostAddr("gateway", e.Gateway); err != nil {
				return nil, err
			}
			if e.Gateway.Is4() != e.Address.Addr().Is4() {
				return nil, fmt.Errorf("gateway %s and address %s are of different IP versions", e.Gateway, e.Address)
			}
			address += "," + e.Gateway.String()
		}
	} else if e.Gateway.IsValid() {
		return nil, fmt.Errorf("gateway %s given without a static address", e.Gateway)
	}
	static4 := address != "" && e.Address.Addr().Is4()
	static6 := address != "" && !static4

	var k Keyfile
	k.Set("connection", "id", id)
	k.Set("connection", "type", "ethernet")
	k.group("ethernet", true)
	if static4 {
		k.Set("ipv4", "method", "manual")
		k.Set("ipv4", "address1", address)
	} else {
		k.Set("ipv4", "method", "auto")
	}
	if dns4.Len() > 0 {
		k.Set("ipv4", "dns", dns4.String())
	}
	k.Set("ipv6", "addr-gen-mode", "stable-privacy")
	if static6 {
		k.Set("ipv6", "method", "manual")
		k.Set("ipv6", "address1", address)
	} else {
		k.Set("ipv6", "method", "auto")
	}
	if dns6.Len() > 0 {
		k.Set("ipv6", "dns", dns6.String())
	}
	return k.Encode(), nil
}

// checkHostAddr refuses addresses that cannot be configured on an interface or used as a server.
func checkHostAddr(what string, a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("%s is not set", what)
	case a.Is4In6():
		return fmt.Errorf("%s %s: IPv4-mapped IPv6 address; give it as %s", what, a, a.Unmap())
	case a.Zone() != "":
		return fmt.Errorf("%s %s: zones are not supported", what, a)
	case a.IsUnspecified(), a.IsMulticast():
		return fmt.Errorf("%s %s: not a unicast address", what, a)
	}
	return nil
}
