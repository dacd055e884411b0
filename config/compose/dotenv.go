package compose

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// This file reads env_file and label_file files (the .env format: KEY=value lines, "export", comments,
// single and double quotes, escapes, multi-line quoted values, ${VAR} in values) as compose-go's dotenv
// package does, with the same errors; it replaces that package so that the hostos binary compiles no
// regexps at start-up (dotenv_test.go compares the two).

// parseEnvFile reads data, the file named filename in the given format ("" or ".env"), into vars.
// Variables in values resolve through lookup first, then through what vars holds so far.
func parseEnvFile(data []byte, filename string, vars map[string]string, lookup lookupFunc, format string) error {
	if format != "" && format != ".env" {
		return fmt.Errorf("unsupported env_file format %q", format)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	p := &envParser{line: 1, out: vars, lookup: lookup}
	if err := p.parse(string(data)); err != nil {
		return fmt.Errorf("failed to read %s: %w", filename, err)
	}
	return nil
}

type envParser struct {
	line   int
	out    map[string]string
	lookup lookupFunc
}

func (p *envParser) parse(src string) error {
	for {
		src = p.statement(src)
		if src == "" {
			return nil
		}
		key, rest, inherited, err := p.key(src)
		if err != nil {
			return err
		}
		if strings.Contains(key, " ") {
			return fmt.Errorf("line %d: key cannot contain a space", p.line)
		}
		if inherited {
			if v, ok := p.lookup(key); ok {
				p.out[key] = v
			}
			src = rest
			continue
		}
		value, rest, err := p.value(rest)
		if err != nil {
			return err
		}
		p.out[key] = value
		src = rest
	}
}

// statement skips white space and comment lines, counting lines, to the start of the next statement.
func (p *envParser) statement(src string) string {
	for {
		start := -1
		for i, r := range src {
			if r == '\n' {
				p.line++
			}
			if !unicode.IsSpace(r) {
				start = i
				break
			}
		}
		if start < 0 {
			return ""
		}
		src = src[start:]
		if src[0] != '#' {
			return src
		}
		nl := strings.IndexByte(src, '\n')
		if nl < 0 {
			return ""
		}
		src = src[nl:]
	}
}

// key reads the name a statement starts with (after "export"), up to "=", ":" or the end of its line (a
// name alone on its line takes its value from lookup).
func (p *envParser) key(src string) (key, rest string, inherited bool, err error) {
	if strings.HasPrefix(src, "export") && len(src) > len("export") && strings.IndexByte("\t\n\f\r ", src[len("export")]) >= 0 {
		src = strings.TrimLeftFunc(src[len("export"):], isEnvSpace)
	}
	offset := 0
loop:
	for i, r := range src {
		if isEnvSpace(r) {
			continue
		}
		switch r {
		case '=', ':', '\n':
			key = src[:i]
			offset = i + 1
			inherited = r == '\n'
			break loop
		case '_', '.', '-', '[', ']':
		default:
			if unicode.IsLetter(r) || unicode.IsNumber(r) {
				continue
			}
			first, _, _ := strings.Cut(src, "\n")
			return "", "", false, fmt.Errorf("line %d: unexpected character %q in variable name %q", p.line, string(r), first)
		}
	}
	if src == "" {
		return "", "", false, errors.New("zero length string")
	}
	if inherited && strings.IndexByte(key, ' ') < 0 {
		p.line++
	}
	key = strings.TrimRightFunc(key, unicode.IsSpace)
	return key, strings.TrimLeftFunc(src[offset:], isEnvSpace), inherited, nil
}

// value reads a value: unquoted to the end of its line (less a " #" comment and trailing space), or
// quoted, across lines, with \ escaping the quote; double-quoted values have their escapes expanded.
func (p *envParser) value(src string) (value, rest string, err error) {
	if src == "" || src[0] != '"' && src[0] != '\'' {
		value, rest, _ := strings.Cut(src, "\n")
		p.line++
		value, _, _ = strings.Cut(value, " #")
		value, err := p.expand(strings.TrimRightFunc(value, unicode.IsSpace))
		return value, rest, err
	}
	quote := src[0]
	escaped := false
	var chars []byte
	for i := 1; i < len(src); i++ {
		c := src[i]
		if c == '\n' {
			p.line++
		}
		if c != quote {
			if !escaped && c == '\\' {
				escaped = true
				continue
			}
			if escaped {
				escaped = false
				chars = append(chars, '\\')
			}
			chars = append(chars, c)
			continue
		}
		if escaped {
			escaped = false
			chars = append(chars, c)
			continue
		}
		value := string(chars)
		if quote == '"' {
			if value, err = p.expand(expandEscapes(value)); err != nil {
				return "", "", err
			}
		}
		return value, src[i+1:], nil
	}
	first, _, _ := strings.Cut(src, "\n")
	return "", "", fmt.Errorf("line %d: unterminated quoted value %s", p.line, first)
}

// expand substitutes the variables of a value, from lookup, then from the values read so far.
func (p *envParser) expand(value string) (string, error) {
	return substitute(value, func(name string) (string, bool) {
		if v, ok := p.lookup(name); ok {
			return v, true
		}
		v, ok := p.out[name]
		return v, ok
	})
}

// expandEscapes expands \a \b \f \n \r \t \v \" \\ and \0 with three octal digits in a double-quoted
// value, and writes \$ as $$ (a literal $ once substituted); \0 with fewer or other digits loses its 0,
// other backslashes stay.
func expandEscapes(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		c := s[i+1]
		if r, ok := simpleEscape(c); ok {
			b.WriteString(r)
			i++
			continue
		}
		if c != '0' {
			b.WriteByte('\\')
			continue
		}
		n := 0 // the digits after \0, up to three
		for n < 3 && i+2+n < len(s) && s[i+2+n] >= '0' && s[i+2+n] <= '9' {
			n++
		}
		digits := s[i+2 : i+2+n]
		i += 1 + n
		v := -1
		if n == 3 {
			v = 0
			for _, d := range digits {
				if d > '7' {
					v = -1
					break
				}
				v = v*8 + int(d-'0')
			}
		}
		if v < 0 || v > 255 {
			// compose-go writes a sequence it cannot read less its 0
			b.WriteString(`\` + digits)
			continue
		}
		b.WriteRune(rune(v))
	}
	return b.String()
}

// simpleEscape is what \c expands to, for the one-letter escapes compose-go's dotenv knows (\c, which
// its pattern takes and Go's unquoting refuses, stays as it is).
func simpleEscape(c byte) (string, bool) {
	switch c {
	case 'a':
		return "\a", true
	case 'b':
		return "\b", true
	case 'c':
		return `\c`, true
	case 'f':
		return "\f", true
	case 'n':
		return "\n", true
	case 'r':
		return "\r", true
	case 't':
		return "\t", true
	case 'v':
		return "\v", true
	case '"':
		return `"`, true
	case '\\':
		return `\`, true
	case '$':
		return "$$", true
	}
	return "", false
}

// isEnvSpace is white space within a line.
func isEnvSpace(r rune) bool {
	switch r {
	case '\t', '\v', '\f', '\r', ' ', 0x85, 0xA0:
		return true
	}
	return false
}
