package release

import (
	"path"
	"strings"
)

// ignorePattern is one line of a .dockerignore file.
type ignorePattern struct {
	parts  []string // slash-separated segments; "**" matches any number of them
	except bool     // the line started with !: it re-includes what earlier lines excluded
}

// parseDockerignore reads a .dockerignore file as Docker does: one pattern per line, # comments and blank
// lines skipped, a leading ! for exceptions, paths relative to the context root (a leading / is dropped).
func parseDockerignore(data []byte) []ignorePattern {
	var out []ignorePattern
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := ignorePattern{}
		if strings.HasPrefix(line, "!") {
			p.except = true
			line = strings.TrimSpace(line[1:])
		}
		line = path.Clean(strings.TrimPrefix(line, "/"))
		if line == "." || line == "" {
			continue
		}
		p.parts = strings.Split(line, "/")
		out = append(out, p)
	}
	return out
}

// ignored reports whether the context path rel (slash-separated) is excluded: the last pattern matching
// it or one of its parent folders decides.
func ignored(patterns []ignorePattern, rel string) bool {
	parts := strings.Split(rel, "/")
	excluded := false
	for _, p := range patterns {
		for n := 1; n <= len(parts); n++ {
			if matchParts(p.parts, parts[:n]) {
				excluded = !p.except
				break
			}
		}
	}
	return excluded
}

// hasExceptions reports whether any pattern re-includes: then an excluded folder is still walked.
func hasExceptions(patterns []ignorePattern) bool {
	for _, p := range patterns {
		if p.except {
			return true
		}
	}
	return false
}

// matchParts matches path segments against pattern segments, "**" standing for zero or more segments.
func matchParts(pattern, name []string) bool {
	if len(pattern) == 0 {
		return len(name) == 0
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if matchParts(pattern[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	ok, err := path.Match(pattern[0], name[0])
	return err == nil && ok && matchParts(pattern[1:], name[1:])
}
