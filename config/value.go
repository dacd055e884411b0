package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ParseValue turns the VALUE of `config write KEY VALUE` into a typed config.json value. With
// forceString it is s itself. Otherwise "true" and "false" are booleans, "null" is nil, a JSON
// number literal is a json.Number (its text kept: 1.50 stays 1.50), text starting with '[' or '{'
// is parsed as JSON (numbers as json.Number; invalid JSON is an error), a complete JSON string
// literal ("\"a b\"") is the string it quotes, and anything else is the raw string. Nothing is
// trimmed: " true" is a string. Invalid UTF-8 is an error naming its byte offset. The value never appears
// in an error (it may be a secret).
func ParseValue(s string, forceString bool) (any, error) {
	if off := invalidUTF8([]byte(s)); off >= 0 {
		return nil, fmt.Errorf("value: invalid UTF-8 at byte %d", off)
	}
	if forceString {
		return s, nil
	}
	switch {
	case s == "true":
		return true, nil
	case s == "false":
		return false, nil
	case s == "null":
		return nil, nil
	case isJSONNumber(s):
		return json.Number(s), nil
	case s != "" && (s[0] == '[' || s[0] == '{'):
		v, err := decodeJSONValue(s)
		if err != nil {
			kind := "array"
			if s[0] == '{' {
				kind = "object"
			}
			return nil, fmt.Errorf("value starts with %q but is not a valid JSON %s (%v); force a string to store it as text", s[:1], kind, err)
		}
		return v, nil
	case len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"':
		if v, err := decodeJSONValue(s); err == nil {
			if str, ok := v.(string); ok {
				return str, nil
			}
		}
	}
	return s, nil
}

// decodeJSONValue decodes exactly one JSON value, numbers as json.Number.
func decodeJSONValue(s string) (any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonSyntaxError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("unexpected data after the value at byte %d", dec.InputOffset())
	}
	return v, nil
}

// jsonSyntaxError keeps an encoding/json error's position and drops text quoted from the input.
func jsonSyntaxError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("syntax error at byte %d", se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("unexpected end")
	}
	return errors.New("invalid JSON")
}

// isJSONNumber reports whether s is exactly a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i - start
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}
