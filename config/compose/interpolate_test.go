package compose

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/interpolation"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/sirupsen/logrus"
)

// interpolateEnv holds set, empty and odd variables for the comparisons with compose-go.
var interpolateEnv = map[string]string{
	"A": "1", "B": "two", "E": "", "TAG": "v1.2", "HOME": "/root", "D": "$A", "BR": "}", "OB": "${",
	"\u017f": "long s", "K\u212a": "kelvin", "_": "underscore", "a1": "lower",
}

func envLookup(name string) (string, bool) {
	v, ok := interpolateEnv[name]
	return v, ok
}

// interpolateCases are templates for substitute: every operator, set, empty and unset variables, and
// hostile input.
var interpolateCases = []string{
	"", "plain", "$", "$$", "$$$", "$$$$", "a$", "$ a", "$-", "$1", "$A", "$A$B", "${A}", "${A}${B}", "$AB", "${AB}",
	"$E", "${E}", "$U", "${U}", "x${A}y", "$A.b", "$_", "${_}", "$a1", "${1}", "${A B}", "${A-}", "${A:}",
	"${A:x}", "${", "${}", "${ A}", "a ${", "${A", "${A-x", "${A:-x", "}", "{}", "$}", "${}}", "$${A}", "$$A",
	"${A:-d}", "${U:-d}", "${E:-d}", "${A-d}", "${U-d}", "${E-d}", "${A:+alt}", "${U:+alt}", "${E:+alt}",
	"${A+alt}", "${U+alt}", "${E+alt}", "${A:?err}", "${U:?err}", "${E:?err}", "${A?err}", "${U?err}",
	"${E?err}", "${U:?}", "${U?}", "${E:?}", "${U:?$A}", "${U:?${B}}", "${U:?${}}", "${U:?${U:?inner}}",
	"${U:-${B}}", "${U:-${U:-${A}}}", "${U:-${U:-${U:-${U}}}}", "${a:-${b:-${c}}}", "${U:-${}}", "${A:-${}}",
	"${U:-{}}", "${U:-{x}y}", "${U:-}}", "${U:-}x}y}", "${U:-{}x}y}", "${U-x} ${A}", "${U-x} ${A-y}",
	"${U-x} ${", "${U-x} ${ }", "${U-x} ${A:?no} ${", "${U-x}\n${A-y}", "${U-x\n}", "${A}\n${", "${U:-a}b}c}",
	"${U:-${B}x}${A}y}", "${U:-a}$}", "${U:-a}${}", "${U:-a}${U:?bad}}", "${U:?a}}", "${A:?a}}",
	"${U:-${A}:-x}", "${U-a-b}", "${U:-a:-b}", "${U+a}", "${A:+${B:+${E:-x}}}", "${A:+}", "${D}", "$D",
	"${BR}", "${OB}", "${U:-$}", "${U:-$$}", "${U:-$$A}", "${U:-$A$B}", "${U:-${A}${B}}", "${U:-'q'}",
	"${U:-\"q\"}", "${U:- spaced }", "$\u017f", "${\u017f}", "$K\u212a", "${K\u212a:-d}", "$\u212a",
	"$\u00e9", "${\u00e9}", "${A}\xff", "\xff${", "${U:-\xff}", "$\xff", "${\xff}", "${U-\xe2}", "${\u017f-\xc5}",
	"${U:-{{}}", "${U:-{{}}}", "${U:-{}{}}", "{${A}}", "${U:-${A}}}}", "${U?${", "${U?${A-}}", "${U:?$}",
	"${U:-a}\n${U:-b}}", "${U:-a}}\n}", "${A-${}}", "${U+${}}", "${A+${}}", "${A:?${}}", "${U:?x}${",
	"${U-}${U-}${U-}", "${U-${U-}${U-}}",
}

// TestSubstituteMatchesComposeGo compares substitute with compose-go's template package: the same
// result, or the same error.
func TestSubstituteMatchesComposeGo(t *testing.T) {
	quietComposeGo()
	cases := append([]string{}, interpolateCases...)
	cases = append(cases,
		strings.Repeat("${U-x}", 2000),
		strings.Repeat("$A${B}$$", 2000),
		strings.Repeat("${U:-", 40)+"deep"+strings.Repeat("}", 40),
		strings.Repeat("${U:-", 40)+"deep"+strings.Repeat("}", 39),
		strings.Repeat("x", 100000)+"${",
		strings.Repeat("${U-", 200)+"${",
	)
	for _, s := range cases {
		compareSubstitute(t, s)
	}
}

// quietComposeGo keeps compose-go's template package from logging each unset variable.
func quietComposeGo() { logrus.SetOutput(io.Discard) }

func compareSubstitute(t *testing.T, s string) {
	t.Helper()
	got, err := substitute(s, envLookup)
	if err != nil && strings.Contains(err.Error(), "nested more than") {
		return
	}
	want, wantErr := template.SubstituteWithOptions(s, envLookup, template.WithoutLogging)
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Errorf("%q: error %v, compose-go %v", short(s), err, wantErr)
		return
	}
	if err == nil && got != want {
		t.Errorf("%q: %q, compose-go %q", short(s), short(got), short(want))
	}
}

func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// TestSubstituteBounded: nesting deeper than maxNesting is refused in one line, and long hostile input
// takes linear time.
func TestSubstituteBounded(t *testing.T) {
	deep := strings.Repeat("${U:-", maxNesting+2) + "x" + strings.Repeat("}", maxNesting+2)
	if _, err := substitute(deep, envLookup); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("nested more than %d deep", maxNesting)) {
		t.Errorf("nesting %d deep: %v", maxNesting+2, err)
	}
	ok := strings.Repeat("${U:-", maxNesting) + "x" + strings.Repeat("}", maxNesting)
	if v, err := substitute(ok, envLookup); err != nil || v != "x" {
		t.Errorf("nesting %d deep: %q, %v", maxNesting, v, err)
	}
	start := time.Now()
	for _, s := range []string{
		strings.Repeat("${U-x}", MaxSize/6),
		strings.Repeat("${U-{", MaxSize/5),
		strings.Repeat("${U:-", MaxSize/5) + strings.Repeat("}", MaxSize/5),
		strings.Repeat("${A-", MaxSize/4) + strings.Repeat("}", MaxSize/4),
		strings.Repeat("$", MaxSize),
		strings.Repeat("${A}", MaxSize/4),
	} {
		_, _ = substitute(s, envLookup)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("hostile input took %v", d)
	}
}

// FuzzSubstituteMatchesComposeGo: substitute and compose-go's template package agree on every string.
func FuzzSubstituteMatchesComposeGo(f *testing.F) {
	for _, s := range interpolateCases {
		f.Add(s)
	}
	quietComposeGo()
	f.Fuzz(func(t *testing.T, s string) {
		compareSubstitute(t, s)
	})
}

// TestInterpolateTreeMatchesComposeGo compares interpolateTree with compose-go's interpolation
// package on trees with failures at several paths: the same values, or the same message.
func TestInterpolateTreeMatchesComposeGo(t *testing.T) {
	quietComposeGo()
	trees := []map[string]any{
		{"services": map[string]any{"a": map[string]any{"image": "${TAG}", "n": 1, "b": true, "nil": nil}}},
		{"services": map[string]any{"a": map[string]any{"image": "${", "command": []any{"x", "${U:?gone}", 2, "${"}}}},
		{"services": map[string]any{
			"b":     map[string]any{"image": "${U:?b}", "labels": map[string]any{"c.d": "${", "a.b": "$U"}},
			"a":     map[string]any{"image": "${U?a}", "x.y": "${"},
			"a.b":   "${",
			"a-b":   []any{map[string]any{"k": "${U-x} ${"}},
			"[]":    "${",
			"👻":     "${",
			"":      "${",
			"a👻b":   "${",
			"other": []any{[]any{"${"}, "${U:?${}}"},
		}},
		{"x.y": "${", "x": map[string]any{"z": "${U:?z}"}, "": map[string]any{"a.b": "${"}, "networks": "${"},
		{"volumes": map[string]any{"v": map[string]any{"driver_opts": map[string]any{"o": "$$x ${A:-1}"}}}},
	}
	for i, tree := range trees {
		subst := func(s string) (string, error) { return substitute(s, envLookup) }
		got, err := interpolateTree(tree, subst)
		want, wantErr := interpolation.Interpolate(tree, interpolation.Options{
			LookupValue: envLookup,
			Substitute: func(s string, m template.Mapping) (string, error) {
				return template.SubstituteWithOptions(s, m, template.WithoutLogging)
			},
		})
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Errorf("tree %d: error\n%v\ncompose-go:\n%v", i, err, wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("tree %d: %v, compose-go %v", i, got, want)
		}
	}
	var te *treeError
	if _, err := interpolateTree(trees[1], func(s string) (string, error) { return substitute(s, envLookup) }); !errors.As(err, &te) || len(te.msgs) != 3 {
		t.Errorf("three failing values: %v", err)
	}
}

// FuzzInterpolateTreeMatchesComposeGo: interpolateTree and compose-go's interpolation package agree on
// trees holding the fuzzed strings as values and keys (the messages, their order and the paths they
// name).
func FuzzInterpolateTreeMatchesComposeGo(f *testing.F) {
	for i, s := range interpolateCases {
		f.Add(s, interpolateCases[(i+1)%len(interpolateCases)], []string{"a", "a.b", "👻", "[]", ""}[i%5])
	}
	quietComposeGo()
	f.Fuzz(func(t *testing.T, s, s2, key string) {
		tree := map[string]any{
			"services": map[string]any{
				key: map[string]any{"image": s, key: []any{s2, map[string]any{key: s}, 1}},
				"b": map[string]any{"environment": map[string]any{"E": s2, "F": nil}},
			},
			"name": s2,
		}
		got, err := interpolateTree(tree, func(s string) (string, error) { return substitute(s, envLookup) })
		if err != nil && strings.Contains(err.Error(), "nested more than") {
			return
		}
		want, wantErr := interpolation.Interpolate(tree, interpolation.Options{
			LookupValue: envLookup,
			Substitute: func(s string, m template.Mapping) (string, error) {
				return template.SubstituteWithOptions(s, m, template.WithoutLogging)
			},
		})
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("error\n%v\ncompose-go:\n%v", err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%v, compose-go %v", got, want)
		}
	})
}
