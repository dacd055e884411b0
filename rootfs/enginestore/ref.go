package enginestore

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Ref is an image reference in the engine's terms: the names repositories.json records.
type Ref struct {
	Name   string // the full repository name: docker.io/library/busybox, registry.example/app
	Repo   string // the familiar repository name: busybox, foo/bar, registry.example/app
	Tag    string // "" without a tag
	Digest string // algorithm:hex, "" without a digest
}

// ParseRef reads an image reference as the engine does: a name without a registry is on docker.io, a
// docker.io name of one component is under library/; a tag, a digest or both may follow. It accepts what
// the engine's reference grammar accepts (lowercase path components joined by '.', '_', "__" or dashes,
// a tag of at most 128 word characters, dots and dashes not starting with either) and refuses a
// repository named by 64 hexadecimal digits, which the engine would take for an image ID.
func ParseRef(s string) (Ref, error) {
	base, _, digested := strings.Cut(s, "@")
	var r Ref
	if digested {
		d, err := name.NewDigest(s)
		if err != nil {
			return Ref{}, err
		}
		r.Digest = d.DigestStr()
	}
	t, err := name.NewTag(base, name.WithDefaultTag(""))
	if err != nil {
		return Ref{}, err
	}
	r.Tag = t.TagStr()
	if r.Tag != "" && (r.Tag[0] == '.' || r.Tag[0] == '-') {
		return Ref{}, fmt.Errorf("tag %q starts with %q", r.Tag, r.Tag[:1])
	}
	repo := t.RepositoryStr()
	for _, c := range strings.Split(repo, "/") {
		if !validComponent(c) {
			return Ref{}, fmt.Errorf("repository path component %q: lowercase letters and digits, separated by '.', '_', \"__\" or dashes", c)
		}
	}
	if reg := t.RegistryStr(); reg == name.DefaultRegistry {
		r.Name = "docker.io/" + repo
		r.Repo = repo
		if rest, ok := strings.CutPrefix(repo, "library/"); ok && !strings.Contains(rest, "/") {
			r.Repo = rest
		}
	} else {
		r.Name = reg + "/" + repo
		r.Repo = r.Name
	}
	if isImageID(r.Repo) {
		return Ref{}, fmt.Errorf("repository %s: 64 hexadecimal digits read as an image ID", r.Repo)
	}
	return r, nil
}

// String is the reference in the engine's familiar form: Repo[:Tag][@Digest] (busybox:latest, foo/bar,
// registry.example/app@sha256:...).
func (r Ref) String() string {
	s := r.Repo
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// OrLatest returns r with the tag latest when it has neither a tag nor a digest, as the engine names what
// it pulls.
func (r Ref) OrLatest() Ref {
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r
}

// validComponent: lowercase alphanumerics, separated by one '.', one or two '_', or any number of '-'.
func validComponent(c string) bool {
	alnum := func(b byte) bool { return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }
	i := 0
	for {
		j := i
		for j < len(c) && alnum(c[j]) {
			j++
		}
		if j == i {
			return false
		}
		if j == len(c) {
			return true
		}
		switch c[j] {
		case '.':
			j++
		case '_':
			j++
			if j < len(c) && c[j] == '_' {
				j++
			}
		case '-':
			for j < len(c) && c[j] == '-' {
				j++
			}
		default:
			return false
		}
		i = j
	}
}

func isImageID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}
