package apps

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"unicode/utf16"
)

// The supervisor's name rules (src/types/basic.ts).
var (
	dockerNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`) })
	envNameRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`) })
	configNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_:]*$`) })
	labelNameRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("^[!#-&(-_a-~]+$") })
	numericRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\s*[0-9]+(\.0*)?\s*$`) })
)

// shortString is the supervisor's ShortString: at most 255 UTF-16 code units, as JavaScript counts.
func shortString(s string) bool {
	return len(s) <= 255 || len(utf16.Encode([]rune(s))) <= 255
}

// Validate checks f as the supervisor's AppsJsonFormat decoder does (src/types/state.ts and basic.ts),
// plus two rules where the supervisor would silently do something else: an app uuid must not be numeric
// (the supervisor would treat the file as v2 and ask the API), and pinDevice needs a fleet-class app.
// The error is the first problem in key order, naming its path.
func (f *File) Validate() error {
	for _, k := range sorted(f.Config) {
		if !shortString(k) || !configNameRE().MatchString(k) {
			return fmt.Errorf("apps.json: config %q: a name starts with a letter or _ and has only letters, digits, _ and :", k)
		}
	}
	fleet := false
	for _, uuid := range sorted(f.Apps) {
		a := f.Apps[uuid]
		at := fmt.Sprintf("apps.json: apps[%q]", uuid)
		if !shortString(uuid) {
			return fmt.Errorf("%s: an app uuid has at most 255 characters", at)
		}
		if numericRE().MatchString(uuid) {
			return fmt.Errorf("%s: a numeric app key makes the supervisor read the file as v2; use the app uuid", at)
		}
		if a.ID < 0 {
			return fmt.Errorf("%s.id: %d is negative", at, a.ID)
		}
		if !shortString(a.Name) {
			return fmt.Errorf("%s.name: more than 255 characters", at)
		}
		switch a.Class {
		case "", "fleet":
			fleet = true
		case "app", "block":
		default:
			return fmt.Errorf("%s.class: %q is not fleet, app or block", at, a.Class)
		}
		if !shortString(a.ParentApp) {
			return fmt.Errorf("%s.parent_app: more than 255 characters", at)
		}
		if len(a.Releases) == 0 {
			return fmt.Errorf("%s.releases: no release; apps.json needs one per app", at)
		}
		for _, commit := range sorted(a.Releases) {
			if err := validateRelease(fmt.Sprintf("%s.releases[%q]", at, commit), commit, a.Releases[commit]); err != nil {
				return err
			}
		}
	}
	if f.PinDevice && !fleet {
		return errors.New("apps.json: pinDevice is set but no app has class fleet")
	}
	return nil
}

func validateRelease(at, commit string, r AppRelease) error {
	if !shortString(commit) {
		return fmt.Errorf("%s: a release uuid has at most 255 characters", at)
	}
	if r.ID < 0 {
		return fmt.Errorf("%s.id: %d is negative", at, r.ID)
	}
	for _, what := range []struct {
		name string
		keys []string
	}{{"services", sorted(r.Services)}, {"volumes", sorted(r.Volumes)}, {"networks", sorted(r.Networks)}} {
		for _, k := range what.keys {
			if !shortString(k) || !dockerNameRE().MatchString(k) {
				return fmt.Errorf("%s.%s[%q]: a name starts with a letter or digit and has only letters, digits, _ . and -", at, what.name, k)
			}
		}
	}
	for _, name := range sorted(r.Services) {
		s := r.Services[name]
		sat := fmt.Sprintf("%s.services[%q]", at, name)
		if s.ID < 0 {
			return fmt.Errorf("%s.id: %d is negative", sat, s.ID)
		}
		if s.ImageID < 0 {
			return fmt.Errorf("%s.image_id: %d is negative", sat, s.ImageID)
		}
		if !shortString(s.Image) {
			return fmt.Errorf("%s.image: more than 255 characters", sat)
		}
		if strings.TrimSpace(s.Image) == "" {
			return fmt.Errorf("%s.image: empty", sat)
		}
		for _, k := range sorted(s.Environment) {
			if !shortString(k) || !envNameRE().MatchString(k) {
				return fmt.Errorf("%s.environment[%q]: a name starts with a letter or _ and has only letters, digits and _", sat, k)
			}
		}
		for _, k := range sorted(s.Labels) {
			if !shortString(k) || !labelNameRE().MatchString(k) {
				return fmt.Errorf("%s.labels[%q]: a label name is printable ASCII without space, quotes or backtick", sat, k)
			}
		}
	}
	return nil
}

func sorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
