package compose

import "strings"

// This file holds what every mapping of a compose file shares: a decoder per field, the loop that runs
// them over a mapping, and the messages that name the field at fault.

// A decoder type-checks the value of a field and returns it in canonical form, or nil to leave the field
// out.
type decoder func(v any) (any, error)

// A schema is what one kind of Compose mapping may hold.
type schema struct {
	field     func(key string) decoder // the decoder of a field; nil for a key that is no field
	notField  string                   // what a key that is no field is not, e.g. "a field of a port"
	asWritten map[string]bool          // fields kept as written, null too (those balena refuses, for its message)
	closed    bool                     // extension keys (x-) are no fields either
}

// decode checks the fields of m in key order and writes their canonical values into out, skipping
// extension keys (x-). A mistake is a *keyError.
func (s schema) decode(m, out map[string]any) error {
	for _, k := range sortedKeys(m) {
		v := m[k]
		if s.asWritten[k] {
			out[k] = v
			continue
		}
		dec := s.field(k)
		if dec == nil {
			if strings.HasPrefix(k, "x-") && !s.closed {
				continue
			}
			return &keyError{key: k, notField: s.notField}
		}
		c, err := dec(v)
		if err != nil {
			return &keyError{key: k, err: err}
		}
		if c != nil {
			out[k] = c
		}
	}
	return nil
}

// mapping is the decoder of a mapping with s's fields.
func (s schema) mapping(v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errf("%s is not a mapping", typeName(v))
	}
	out := map[string]any{}
	if err := s.decode(m, out); err != nil {
		return nil, err
	}
	return out, nil
}

// listOf is the decoder of a list with entry the decoder of each entry; an empty list is left out.
func listOf(entry decoder) decoder {
	return func(v any) (any, error) {
		l, ok := v.([]any)
		if !ok {
			return nil, errf("%s is not a list", typeName(v))
		}
		var out []any
		for _, e := range l {
			c, err := entry(e)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		if len(out) == 0 {
			return nil, nil
		}
		return out, nil
	}
}

// A keyError is a mistake in one field of a mapping: in its value, or a key that is no field.
type keyError struct {
	key      string
	err      error  // the mistake in the value; nil for a key that is no field
	notField string // for a key that is no field: what it is not
}

// Error reads "key: mistake" or "key is not …"; a mistake in a field of the value joins the two keys
// with a dot ("config.subnet: …").
func (e *keyError) Error() string { return e.format(".") }

// format joins the key and that of a field of its value at fault with sep.
func (e *keyError) format(sep string) string {
	if e.err == nil {
		return e.key + " is not " + e.notField
	}
	if inner, ok := e.err.(*keyError); ok && inner.err != nil {
		return e.key + sep + inner.Error()
	}
	return e.key + ": " + e.err.Error()
}

// within names the entry of a larger mapping (a service under depends_on, a network of a service) that
// a mistake is in.
func within(name string, err error) error { return &keyError{key: name, err: err} }

// sectionError gives decode's mistake in a service, volume or network (what, e.g. "service web", at
// its path) at the line of the field; there a field and the mistake in a field of its value part with a
// colon ("service web: healthcheck: interval: …").
func (p *parser) sectionError(at, what string, err error) error {
	ke, ok := err.(*keyError)
	if !ok {
		return p.errorf(at, "%s: %v", what, err)
	}
	return p.errorf(at+"."+ke.key, "%s: %s", what, ke.format(": "))
}

// nonEmptyString reads a string, left out when empty.
func nonEmptyString(v any) (any, error) {
	s, err := asString(v)
	if err != nil || s == "" {
		return nil, err
	}
	return s, nil
}

// trueBool reads a boolean, left out when false.
func trueBool(v any) (any, error) {
	b, err := asBool(v)
	if err != nil || !b {
		return nil, err
	}
	return true, nil
}

// nonZeroInt reads an integer, left out when zero.
func nonZeroInt(v any) (any, error) {
	n, err := asInt(v)
	if err != nil || n == 0 {
		return nil, err
	}
	return n, nil
}

// labelValues reads labels (or sysctls, annotations): a key/value list or mapping in which a key alone
// maps to an empty string, left out when empty.
func labelValues(v any) (any, error) {
	m, err := listOrDict(v)
	if err != nil || len(m) == 0 {
		return nil, err
	}
	for k, e := range m {
		if e == nil {
			m[k] = ""
		}
	}
	return m, nil
}

// verbatim keeps a value as written (left out when null).
func verbatim(v any) (any, error) { return v, nil }

// kept makes a decoder of read that keeps what it reads, an empty string or false too.
func kept[T any](read func(any) (T, error)) decoder {
	return func(v any) (any, error) { return read(v) }
}

// nonEmpty makes a decoder of read that leaves an empty list or mapping out.
func nonEmpty[T []any | map[string]any](read func(any) (T, error)) decoder {
	return func(v any) (any, error) {
		x, err := read(v)
		if err != nil || len(x) == 0 {
			return nil, err
		}
		return x, nil
	}
}
