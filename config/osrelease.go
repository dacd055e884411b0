package config

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode"
)

var osReleaseName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`) })

// ParseOSRelease reads an os-release file (os-release(5)): KEY=value lines with shell quoting. Values
// may be unquoted (backslash escapes the next character), in double quotes (backslash escapes
// $ " \ ` only) or in single quotes (literal), and quoted parts may be joined ("a"'b'). Trailing
// unquoted blanks are dropped. Comments, blank lines and malformed lines (bad name, unterminated quote)
// are skipped; a later assignment wins.
func ParseOSRelease(data []byte) map[string]string {
	out := make(map[string]string)
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimLeft(strings.TrimSuffix(line, "\r"), " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		name, raw, ok := strings.Cut(line, "=")
		if !ok || !osReleaseName().MatchString(name) {
			continue
		}
		value, ok := unquoteShell(raw)
		if !ok {
			continue
		}
		out[name] = value
	}
	return out
}

// OSVersion is the version an os-release file names: VERSION_ID, else VERSION; "" when neither is set.
func OSVersion(data []byte) string {
	f := ParseOSRelease(data)
	if v := f["VERSION_ID"]; v != "" {
		return v
	}
	return f["VERSION"]
}

// unquoteShell undoes shell quoting on one line's value.
func unquoteShell(s string) (string, bool) {
	var b strings.Builder
	trailing := 0 // unquoted blanks at the end of b, dropped at the end
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			trailing = 0
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '\'':
			trailing = 0
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return "", false
			}
			b.WriteString(s[i+1 : i+1+end])
			i += end + 1
		case '"':
			trailing = 0
			closed := false
			for i++; i < len(s); i++ {
				if s[i] == '"' {
					closed = true
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$\"\\`", s[i+1]) >= 0 {
					i++
				}
				b.WriteByte(s[i])
			}
			if !closed {
				return "", false
			}
		case ' ', '\t':
			trailing++
			b.WriteByte(c)
		default:
			trailing = 0
			b.WriteByte(c)
		}
	}
	v := b.String()
	return v[:len(v)-trailing], true
}

// OSReleaseField is one assignment of an os-release file.
type OSReleaseField struct {
	Key, Value string
}

// OSRelease writes an os-release file, one KEY="value" line per field in the order given, values in
// double quotes with $ " \ ` escaped by a backslash. A key that is not a shell variable name, a key
// given twice and a value holding control characters are errors.
func OSRelease(fields ...OSReleaseField) ([]byte, error) {
	var b bytes.Buffer
	seen := make(map[string]bool, len(fields))
	for _, f := range fields {
		if !osReleaseName().MatchString(f.Key) {
			return nil, fmt.Errorf("os-release key %q is not a variable name", f.Key)
		}
		if seen[f.Key] {
			return nil, fmt.Errorf("os-release key %s given twice", f.Key)
		}
		seen[f.Key] = true
		if strings.IndexFunc(f.Value, unicode.IsControl) >= 0 {
			return nil, fmt.Errorf("os-release key %s: value holds a control character", f.Key)
		}
		b.WriteString(f.Key)
		b.WriteString(`="`)
		for i := 0; i < len(f.Value); i++ {
			if strings.IndexByte("$\"\\`", f.Value[i]) >= 0 {
				b.WriteByte('\\')
			}
			b.WriteByte(f.Value[i])
		}
		b.WriteString("\"\n")
	}
	return b.Bytes(), nil
}

// Release describes a balenaOS build for its os-release file.
type Release struct {
	Version           string // VERSION and VERSION_ID, e.g. "6.0.13+rev1"
	MetaBalenaVersion string // META_BALENA_VERSION, e.g. "6.0.13"; defaults to Version
	Machine           string // MACHINE (Yocto)
	Slug              string // SLUG (device type); omitted when empty
	Development       bool   // VARIANT="Development", VARIANT_ID="dev" instead of Production/prod
	DistroCodename    string // DISTRO_CODENAME (Yocto release, e.g. "scarthgap"); omitted when empty
	BoardRev          string // BALENA_BOARD_REV (device repository commit); omitted when empty
	MetaBalenaRev     string // META_BALENA_REV (meta-balena commit); omitted when empty
}

// Fields returns the os-release fields balenaOS writes, in balenaOS's order.
func (r Release) Fields() []OSReleaseField {
	variant, variantID := "Production", "prod"
	if r.Development {
		variant, variantID = "Development", "dev"
	}
	meta := r.MetaBalenaVersion
	if meta == "" {
		meta = r.Version
	}
	fields := []OSReleaseField{
		{"ID", "balena-os"},
		{"NAME", "balenaOS"},
		{"VERSION", r.Version},
		{"VERSION_ID", r.Version},
		{"PRETTY_NAME", "balenaOS " + r.Version},
	}
	if r.DistroCodename != "" {
		fields = append(fields, OSReleaseField{"DISTRO_CODENAME", r.DistroCodename})
	}
	fields = append(fields,
		OSReleaseField{"MACHINE", r.Machine},
		OSReleaseField{"VARIANT", variant},
		OSReleaseField{"VARIANT_ID", variantID},
		OSReleaseField{"META_BALENA_VERSION", meta},
	)
	for _, f := range []OSReleaseField{{"BALENA_BOARD_REV", r.BoardRev}, {"META_BALENA_REV", r.MetaBalenaRev}, {"SLUG", r.Slug}} {
		if f.Value != "" {
			fields = append(fields, f)
		}
	}
	return fields
}
