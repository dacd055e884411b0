package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Config is a balenaOS config.json document. It keeps every key, known or not, and every number as
// the literal text it was read as (a 64-bit id or 1.50 survives a round trip unchanged). Values are
// the JSON types: nil, bool, json.Number, string, []any and map[string]any.
//
// The zero Config is an empty object.
type Config struct {
	m map[string]any
}

// NewConfig returns the config.json of a fresh image: {"deviceType": slug, "persistentLogging": false},
// plus "developmentMode": true for a development image.
func NewConfig(deviceType string, development bool) Config {
	m := map[string]any{
		"deviceType":        deviceType,
		"persistentLogging": false,
	}
	if development {
		m["developmentMode"] = true
	}
	return Config{m: m}
}

// ParseConfig decodes config.json. The document must be exactly one JSON object.
// Invalid UTF-8 is refused with its byte offset rather than turned into U+FFFD, and errors never quote
// the document (it holds secrets).
func ParseConfig(data []byte) (Config, error) {
	if off := invalidUTF8(data); off >= 0 {
		return Config{}, fmt.Errorf("config.json: invalid UTF-8 at byte %d", off)
	}
	if off := loneSurrogate(data); off >= 0 {
		return Config{}, fmt.Errorf("config.json: \\u escape of an unpaired UTF-16 surrogate at byte %d", off)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, errors.New("config.json: empty document")
		}
		return Config{}, fmt.Errorf("config.json: %w", jsonSyntaxError(err))
	}
	m, ok := v.(map[string]any)
	if !ok {
		return Config{}, fmt.Errorf("config.json: top level is %s, not a JSON object", jsonKind(v))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("config.json: unexpected data after the object at byte %d", dec.InputOffset())
	}
	return Config{m: m}, nil
}

// invalidUTF8 returns the offset of the first byte of data that is not valid UTF-8, or -1.
func invalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		if data[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// loneSurrogate returns the offset of a \uD800-\uDFFF escape inside a JSON string that is not part of
// a high-low pair (encoding/json would turn it into U+FFFD), or -1. Text outside strings is skipped.
func loneSurrogate(data []byte) int {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(data[i+2:i+6]), 16, 16)
		return rune(v), err == nil
	}
	inString := false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case !inString:
			inString = c == '"'
		case c == '"':
			inString = false
		case c == '\\':
			r, ok := hex4(i)
			if !ok {
				i++ // a two-character escape such as \" or \\
				continue
			}
			switch {
			case r >= 0xd800 && r < 0xdc00:
				if low, ok := hex4(i + 6); !ok || low < 0xdc00 || low > 0xdfff {
					return i
				}
				i += 11
			case r >= 0xdc00 && r <= 0xdfff:
				return i
			default:
				i += 5
			}
		}
	}
	return -1
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// configFromGo converts any JSON-marshalable Go value holding an object into a Config.
func configFromGo(v any) (Config, error) {
	norm, err := normalize(v)
	if err != nil {
		return Config{}, err
	}
	m, ok := norm.(map[string]any)
	if !ok {
		return Config{}, fmt.Errorf("value is %s, not a JSON object", jsonKind(norm))
	}
	return Config{m: m}, nil
}

// normalize turns a Go value into the JSON value tree Config stores, via encoding/json.
func normalize(v any) (any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// Encode returns the document as compact JSON with object keys sorted at every level, written as
// JavaScript's JSON.stringify writes strings (balena's CLI and SDK write config.json with
// JSON.stringify; jq -S sorts keys the same way). Numbers keep their original text. No trailing newline.
func (c Config) Encode() []byte {
	var b bytes.Buffer
	encodeValue(&b, c.object())
	return b.Bytes()
}

// EncodeValue encodes one value as Get returns it (nil, bool, json.Number, string, []any,
// map[string]any) the way Encode writes it: compact, keys sorted, strings as JSON.stringify writes them.
func EncodeValue(v any) []byte {
	var b bytes.Buffer
	encodeValue(&b, v)
	return b.Bytes()
}

// MarshalJSON implements json.Marshaler with Encode.
func (c Config) MarshalJSON() ([]byte, error) { return c.Encode(), nil }

// UnmarshalJSON implements json.Unmarshaler with ParseConfig.
func (c *Config) UnmarshalJSON(data []byte) error {
	parsed, err := ParseConfig(data)
	if err != nil {
		return err
	}
	*c = parsed
	return nil
}

func (c Config) object() map[string]any {
	if c.m == nil {
		return map[string]any{}
	}
	return c.m
}

func encodeValue(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if v {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case json.Number:
		b.WriteString(v.String())
	case string:
		encodeString(b, v)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeValue(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeString(b, k)
			b.WriteByte(':')
			encodeValue(b, v[k])
		}
		b.WriteByte('}')
	default:
		// Only the types above are ever stored (see normalize); anything else encodes as null
		// rather than producing invalid JSON.
		b.WriteString("null")
	}
}

// encodeString quotes s as ECMAScript's JSON.stringify does: \" \\ \b \f \n \r \t, other control
// characters as \u00xx (lower-case hex), everything else (including U+2028, U+2029 and <>&) as is.
// Invalid UTF-8 is written as U+FFFD.
func encodeString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString("\ufffd")
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hex[r>>4])
			b.WriteByte(hex[r&0xf])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
}

// Clone returns a deep copy.
func (c Config) Clone() Config {
	return Config{m: CopyJSON(c.object()).(map[string]any)}
}

// CopyJSON deep-copies a decoded JSON value (objects, arrays, scalars).
func CopyJSON(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = CopyJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = CopyJSON(e)
		}
		return out
	default:
		return v
	}
}

// Keys returns the top-level keys, sorted.
func (c Config) Keys() []string {
	keys := make([]string, 0, len(c.m))
	for k := range c.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func splitKey(key string) ([]string, error) {
	if key == "" {
		return nil, errors.New("config key is empty")
	}
	parts := strings.Split(key, ".")
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("config key %q has an empty segment", key)
		}
	}
	return parts, nil
}

// Get returns the value at a dotted key ("os.sshKeys" is key sshKeys of object os). Objects and arrays
// are returned as deep copies. ok is false when any segment is missing.
func (c Config) Get(key string) (value any, ok bool) {
	parts, err := splitKey(key)
	if err != nil {
		return nil, false
	}
	return c.GetPath(parts...)
}

// GetPath is Get with the key already split, for keys that themselves hold dots (deviceApiKeys is
// keyed by host name).
func (c Config) GetPath(path ...string) (value any, ok bool) {
	if len(path) == 0 {
		return nil, false
	}
	var cur any = c.m
	for _, p := range path {
		obj, isObj := cur.(map[string]any)
		if !isObj {
			return nil, false
		}
		cur, ok = obj[p]
		if !ok {
			return nil, false
		}
	}
	return CopyJSON(cur), true
}

// String returns the string at a dotted key; ok is false when it is missing or not a string.
func (c Config) String(key string) (s string, ok bool) {
	v, found := c.Get(key)
	s, ok = v.(string)
	return s, found && ok
}

// Set stores value at a dotted key, creating intermediate objects as needed. value is any value
// encoding/json can marshal (a json.Number or json.RawMessage keeps its exact text). Setting through a
// segment that holds a non-object is an error; nothing is changed then.
func (c *Config) Set(key string, value any) error {
	parts, err := splitKey(key)
	if err != nil {
		return err
	}
	return c.SetPath(value, parts...)
}

// SetPath is Set with the key already split.
func (c *Config) SetPath(value any, path ...string) error {
	name := strings.Join(path, ".")
	if len(path) == 0 {
		return errors.New("config key is empty")
	}
	norm, err := normalize(value)
	if err != nil {
		return fmt.Errorf("config key %s: %w", name, err)
	}
	// Check the whole path before touching anything.
	var cur any = c.m
	for i, p := range path[:len(path)-1] {
		obj, _ := cur.(map[string]any)
		next, exists := obj[p]
		if !exists {
			break
		}
		if _, isObj := next.(map[string]any); !isObj {
			return fmt.Errorf("config key %s: %s is %s, not an object", name, strings.Join(path[:i+1], "."), jsonKind(next))
		}
		cur = next
	}
	if c.m == nil {
		c.m = map[string]any{}
	}
	obj := c.m
	for _, p := range path[:len(path)-1] {
		next, exists := obj[p].(map[string]any)
		if !exists {
			next = map[string]any{}
			obj[p] = next
		}
		obj = next
	}
	obj[path[len(path)-1]] = norm
	return nil
}

// Delete removes the value at a dotted key and reports whether it was there.
func (c *Config) Delete(key string) bool {
	parts, err := splitKey(key)
	if err != nil {
		return false
	}
	var cur any = c.m
	for _, p := range parts[:len(parts)-1] {
		obj, isObj := cur.(map[string]any)
		if !isObj {
			return false
		}
		cur = obj[p]
	}
	obj, isObj := cur.(map[string]any)
	if !isObj {
		return false
	}
	if _, ok := obj[parts[len(parts)-1]]; !ok {
		return false
	}
	delete(obj, parts[len(parts)-1])
	return true
}
