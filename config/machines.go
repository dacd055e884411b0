package config

import (
	_ "embed"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Machine is what building a container for a device type needs to know of it: the vocabulary of balena's
// Dockerfile templates. Every balena device type has one, and so does every device type of the build
// registry (DeviceTypes).
//
// balena's builder (balena-cli through @balena/compose's multibuild and its Dockerfile template resolver)
// renders %%BALENA_MACHINE_NAME%% and its legacy twin %%RESIN_MACHINE_NAME%% as the device-type slug, not
// the Yocto machine: the balenalib base images are named after slugs (balenalib/intel-nuc-node, not
// genericx86-64). %%BALENA_ARCH%% and %%RESIN_ARCH%% are the balena arch.
type Machine struct {
	Slug  string `toml:"slug"`    // balena device-type slug: the value of %%BALENA_MACHINE_NAME%%
	Name  string `toml:"name"`    // human name
	Arch  string `toml:"arch"`    // balena arch: the value of %%BALENA_ARCH%%
	Yocto string `toml:"machine"` // Yocto MACHINE the OS is built for
}

//go:embed machines.toml
var machinesTOML []byte

// machineTable is parsed on first use, never at start-up.
var machineTable struct {
	once sync.Once
	list []Machine // sorted by slug
	err  error
}

// ParseMachines decodes a device-type vocabulary in TOML (machines = [{slug, name, arch, machine}]). A
// missing machine is the slug. Unknown fields, a missing slug, name or arch, an arch balena does not
// know and duplicate slugs are errors.
func ParseMachines(data []byte) ([]Machine, error) {
	var doc struct {
		Machines []Machine `toml:"machines"`
	}
	if err := DecodeTOML(data, "device-type vocabulary", &doc); err != nil {
		return nil, err
	}
	if len(doc.Machines) == 0 {
		return nil, errors.New("device-type vocabulary: no device types")
	}
	seen := make(map[string]bool, len(doc.Machines))
	for i := range doc.Machines {
		m := &doc.Machines[i]
		if m.Yocto == "" {
			m.Yocto = m.Slug
		}
		switch {
		case !slugPattern().MatchString(m.Slug):
			return nil, fmt.Errorf("device-type vocabulary: entry %d: slug %q is not a lower-case slug", i+1, m.Slug)
		case m.Name == "":
			return nil, fmt.Errorf("device-type vocabulary: %s: missing name", m.Slug)
		case !knownArches[m.Arch]:
			return nil, fmt.Errorf("device-type vocabulary: %s: unknown arch %q", m.Slug, m.Arch)
		case seen[m.Slug]:
			return nil, fmt.Errorf("device-type vocabulary: duplicate slug %q", m.Slug)
		}
		seen[m.Slug] = true
	}
	return doc.Machines, nil
}

// loadMachines returns the built-in vocabulary merged with the build registry's device types that balena
// does not publish (the registry's entry wins nowhere else: the package tests check both agree).
func loadMachines() ([]Machine, error) {
	machineTable.once.Do(func() {
		list, err := ParseMachines(machinesTOML)
		if err != nil {
			machineTable.err = fmt.Errorf("built-in %w", err)
			return
		}
		known := make(map[string]bool, len(list))
		for _, m := range list {
			known[m.Slug] = true
		}
		for _, dt := range DeviceTypes() {
			if !known[dt.Slug] {
				list = append(list, Machine{Slug: dt.Slug, Name: dt.Name, Arch: dt.Arch, Yocto: dt.Machine})
			}
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Slug < list[j].Slug })
		machineTable.list = list
	})
	return machineTable.list, machineTable.err
}

// Machines returns every device type a template can be rendered for, sorted by slug.
func Machines() []Machine {
	list, _ := loadMachines()
	return append([]Machine(nil), list...)
}

// LookupMachine returns the device type with the given slug. An unknown slug gives an error wrapping
// ErrUnknownDeviceType that names the near matches.
func LookupMachine(slug string) (Machine, error) {
	list, err := loadMachines()
	if err != nil {
		return Machine{}, err
	}
	i := sort.Search(len(list), func(i int) bool { return list[i].Slug >= slug })
	if i < len(list) && list[i].Slug == slug {
		return list[i], nil
	}
	slugs := make([]string, len(list))
	for i, m := range list {
		slugs[i] = m.Slug
	}
	near := NearSlugs(slug, slugs)
	if len(near) == 0 {
		return Machine{}, fmt.Errorf("%w %q: no known device type is near it", ErrUnknownDeviceType, slug)
	}
	return Machine{}, fmt.Errorf("%w %q: did you mean %s?", ErrUnknownDeviceType, slug, strings.Join(near, ", "))
}

// maxNear bounds the suggestions of NearSlugs.
const maxNear = 5

// NearSlugs returns up to five of known that slug is likely a typo or a shortening of: the slugs that
// extend it (raspberrypi4 → raspberrypi4-64) if any, else the closest within a small edit distance (and
// those one edit further), closest first.
func NearSlugs(slug string, known []string) []string {
	type cand struct {
		s string
		d int
	}
	var prefixed, close []cand
	limit := max(2, len(slug)/4)
	for _, k := range known {
		d := editDistance(slug, k)
		switch {
		case slug != "" && strings.HasPrefix(k, slug):
			prefixed = append(prefixed, cand{k, d})
		case d <= limit:
			close = append(close, cand{k, d})
		}
	}
	pick := prefixed
	if len(pick) == 0 {
		pick = close
	}
	sort.Slice(pick, func(i, j int) bool {
		if pick[i].d != pick[j].d {
			return pick[i].d < pick[j].d
		}
		return pick[i].s < pick[j].s
	})
	var out []string
	for i := 0; i < len(pick) && i < maxNear; i++ {
		if len(prefixed) == 0 && pick[i].d > pick[0].d+1 {
			break
		}
		out = append(out, pick[i].s)
	}
	return out
}

// editDistance is the Levenshtein distance of a and b, in bytes (slugs are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
