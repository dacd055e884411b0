package compose

import (
	"fmt"
	"slices"
	"strings"
)

// This file is Compose variable interpolation ($VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
// ${VAR:?message}, ${VAR?message}, ${VAR:+alternative}, ${VAR+alternative}, $$), with the results and the
// error messages of compose-go's template and interpolation packages, which it replaces so that the
// hostos binary compiles no regexps at start-up (oracle_test.go and interpolate_test.go hold them to it).

// maxNesting bounds how deep defaults, alternatives and messages nest in one another
// (${a:-${b:-${c}}} nests 2 deep), so hostile input costs time linear in its size.
const maxNesting = 64

// lookupFunc maps a variable name to its value, and whether it is set.
type lookupFunc func(name string) (string, bool)

// invalidTemplateError is a "${" that starts no valid substitution, in template.
type invalidTemplateError struct{ template string }

func (e *invalidTemplateError) Error() string {
	return fmt.Sprintf("Invalid template: %#v", e.template)
}

// substitute replaces the variables of s with their values.
func substitute(s string, lookup lookupFunc) (string, error) {
	return substituteDepth(s, lookup, 0)
}

// substituteDepth substitutes s, a default, alternative or message depth levels down.
//
// A substitution with an operator (${a-x}) reaches, as compose-go's pattern does, to the last "}" of its
// line; the part after the "}" that closes it (its braces counted) is then substituted on its own, and
// an invalid "${" there names that part, not s, in its error. That part is a "region" below.
func substituteDepth(s string, lookup lookupFunc, depth int) (string, error) {
	if depth > maxNesting {
		return "", fmt.Errorf("variable substitutions nested more than %d deep", maxNesting)
	}
	if strings.IndexByte(s, '$') < 0 {
		return s, nil
	}
	var b strings.Builder
	regionStart, regionEnd := -1, -1
	lineEnd, lastBrace := -1, -1 // the end of the current line of s, and its last "}"
	for i := 0; i < len(s); {
		if i == regionEnd {
			regionStart, regionEnd = -1, -1
		}
		if s[i] != '$' {
			j := strings.IndexByte(s[i:], '$')
			if j < 0 {
				j = len(s) - i
			}
			if regionEnd >= 0 && i+j > regionEnd {
				j = regionEnd - i
			}
			b.WriteString(s[i : i+j])
			i += j
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			i += 2
			continue
		}
		if n := nameLen(s[i+1:]); n > 0 {
			v, _ := lookup(s[i+1 : i+1+n])
			b.WriteString(v)
			i += 1 + n
			continue
		}
		if i+1 >= len(s) || s[i+1] != '{' {
			b.WriteByte('$')
			i++
			continue
		}
		invalid := func() error {
			if regionStart >= 0 {
				return &invalidTemplateError{template: s[regionStart:regionEnd]}
			}
			return &invalidTemplateError{template: s}
		}
		n := nameLen(s[i+2:])
		if n == 0 {
			return "", invalid()
		}
		name := s[i+2 : i+2+n]
		k := i + 2 + n
		if k < len(s) && s[k] == '}' {
			v, _ := lookup(name)
			b.WriteString(v)
			i = k + 1
			continue
		}
		colon := k < len(s) && s[k] == ':'
		if colon {
			k++
		}
		if k >= len(s) || (s[k] != '-' && s[k] != '+' && s[k] != '?') {
			return "", invalid()
		}
		op := s[k]
		k++
		// The substitution reaches to the last "}" of the line (of the region, which is one line).
		end := -1
		if regionEnd >= 0 {
			end = regionEnd - 1
		} else {
			if i >= lineEnd {
				lineEnd = len(s)
				if nl := strings.IndexByte(s[i:], '\n'); nl >= 0 {
					lineEnd = i + nl
				}
				lastBrace = strings.LastIndexByte(s[i:lineEnd], '}')
				if lastBrace >= 0 {
					lastBrace += i
				}
			}
			end = lastBrace
		}
		if end < k {
			return "", invalid()
		}
		match := s[i : end+1]
		closing := len(match) - 1
		if c := closingBrace(match); c >= 0 {
			closing = c
		}
		arg := s[k : i+closing]
		v, ok := lookup(name)
		var err error
		switch {
		case op == '-' && (!ok || colon && v == ""):
			v, err = substituteDepth(arg, lookup, depth+1)
		case op == '+' && ok && (!colon || v != ""):
			v, err = substituteDepth(arg, lookup, depth+1)
		case op == '?' && (!ok || colon && v == ""):
			var msg string
			if msg, err = substituteDepth(arg, lookup, depth+1); err == nil {
				err = missingRequired(name, msg)
			}
		}
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		i += closing + 1
		if i <= end {
			regionStart, regionEnd = i, end+1
		}
	}
	return b.String(), nil
}

func missingRequired(name, reason string) error {
	if reason != "" {
		return fmt.Errorf("required variable %s is missing a value: %s", name, reason)
	}
	return fmt.Errorf("required variable %s is missing a value", name)
}

// nameLen is the length of the variable name s starts with: [_A-Za-z][_A-Za-z0-9]*, where compose-go's
// case-insensitive pattern also takes U+017F and U+212A (which fold to s and k) for letters.
func nameLen(s string) int {
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9':
			i++
		case strings.HasPrefix(s[i:], "\u017f"):
			i += len("\u017f")
		case strings.HasPrefix(s[i:], "\u212a"):
			i += len("\u212a")
		default:
			return i
		}
	}
	return i
}

// closingBrace is the index of the "}" that closes the "${" m starts with, counting braces as compose-go
// does (the character after each "{" is skipped), or -1.
func closingBrace(m string) int {
	open := 0
	for i := 0; i < len(m); i++ {
		switch m[i] {
		case '}':
			open--
			if open == 0 {
				return i
			}
		case '{':
			open++
			i++
		}
	}
	return -1
}

// interpolateTree substitutes every string value of top (keys stay as they are), as compose-go's
// interpolation package does: no value is cast, and every failing value is reported, one message per
// value, ordered by path.
func interpolateTree(top map[string]any, subst func(string) (string, error)) (map[string]any, error) {
	out := map[string]any{}
	var errs []*treeError
	for _, key := range sortedKeys(top) {
		v, err := interpolateValue(top[key], key, subst)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[key] = v
	}
	if err := joinTreeErrors(errs, true); err != nil {
		return nil, err
	}
	return out, nil
}

// treeError is the failures below one path: their messages in order, and the path of the first as the
// parts it is sorted by.
type treeError struct {
	first []string
	msgs  []string
}

func (e *treeError) Error() string { return strings.Join(e.msgs, "\n") }

func joinTreeErrors(errs []*treeError, sorted bool) *treeError {
	if len(errs) == 0 {
		return nil
	}
	if sorted {
		slices.SortStableFunc(errs, func(a, b *treeError) int { return slices.Compare(a.first, b.first) })
	}
	j := &treeError{first: errs[0].first}
	for _, e := range errs {
		j.msgs = append(j.msgs, e.msgs...)
	}
	return j
}

// nextPath is compose-go's tree.Path.Next: a dot in a key below the top level is written as a ghost.
func nextPath(path, part string) string {
	if path == "" {
		return part
	}
	return path + "." + strings.ReplaceAll(part, ".", "👻")
}

func interpolateValue(v any, path string, subst func(string) (string, error)) (any, *treeError) {
	switch v := v.(type) {
	case string:
		s, err := subst(v)
		if err == nil {
			return s, nil
		}
		shown := strings.ReplaceAll(path, "👻", ".")
		msg := fmt.Sprintf("error while interpolating %s: %s", shown, err)
		if it, ok := err.(*invalidTemplateError); ok {
			msg = fmt.Sprintf("invalid interpolation format for %s.\nYou may need to escape any $ with another $.\n%s", shown, it.template)
		}
		return nil, &treeError{first: strings.Split(path, "."), msgs: []string{msg}}
	case map[string]any:
		out := map[string]any{}
		var errs []*treeError
		for _, key := range sortedKeys(v) {
			e, err := interpolateValue(v[key], nextPath(path, key), subst)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out[key] = e
		}
		if err := joinTreeErrors(errs, true); err != nil {
			return nil, err
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		var errs []*treeError
		for i, e := range v {
			e, err := interpolateValue(e, nextPath(path, "[]"), subst)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out[i] = e
		}
		if err := joinTreeErrors(errs, false); err != nil {
			return nil, err
		}
		return out, nil
	}
	return v, nil
}
