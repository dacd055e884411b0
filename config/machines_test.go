package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// balenaArches are the arches balena's contracts define (contracts/arch.sw) plus the two older ones the
// base images still name (armv5e, armv6).
var balenaArches = map[string]bool{
	"rpi": true, "armv5e": true, "armv6": true, "armv7hf": true, "aarch64": true, "i386": true, "i386-nlp": true, "amd64": true,
}

func TestMachinesTable(t *testing.T) {
	list := Machines()
	if len(list) < 140 {
		t.Fatalf("vocabulary has %d device types, want every balena one (145 in the contracts)", len(list))
	}
	for i, m := range list {
		if m.Slug == "" || m.Name == "" || m.Arch == "" || m.Yocto == "" {
			t.Errorf("entry %d incomplete: %+v", i, m)
		}
		if !balenaArches[m.Arch] {
			t.Errorf("%s: arch %q is not a balena arch", m.Slug, m.Arch)
		}
		if i > 0 && list[i-1].Slug >= m.Slug {
			t.Errorf("not sorted or duplicated: %s before %s", list[i-1].Slug, m.Slug)
		}
	}
	// Facts checked against balena's contracts and device manifests.
	for _, want := range []Machine{
		{"raspberrypi4-64", "Raspberry Pi 4 (using 64bit OS)", "aarch64", "raspberrypi4-64"},
		{"raspberry-pi", "Raspberry Pi (v1 / Zero / Zero W)", "rpi", "raspberrypi"},
		{"raspberry-pi2", "Raspberry Pi 2", "armv7hf", "raspberrypi2"},
		{"raspberrypi3", "Raspberry Pi 3", "armv7hf", "raspberrypi3"},
		{"intel-nuc", "Intel NUC", "amd64", "genericx86-64"},
		{"genericx86-64-ext", "Generic x86_64 (legacy MBR)", "amd64", "genericx86-64-ext"},
		{"jetson-nano", "Nvidia Jetson Nano SD-CARD", "aarch64", "jetson-nano"},
		{"jetson-agx-orin-devkit", "Nvidia Jetson AGX Orin Devkit 32GB", "aarch64", "jetson-agx-orin-devkit"},
		{"beaglebone-black", "BeagleBone Black", "armv7hf", "beaglebone"},
		{"apalis-imx6q", "Apalis iMX6q", "armv7hf", "apalis-imx6"},
		{"hummingboard", "Hummingboard", "armv7hf", "solidrun-imx6"},
		{"intel-edison", "Intel Edison", "i386", "edison"},
		{"cybertan-ze250", "Cybertan ZE250", "i386-nlp", "intel-quark"},
		{"parallella", "Parallella", "armv7hf", "parallella-hdmi-resin"},
		{"radxa-zero", "Radxa Zero", "aarch64", "radxa-zero-s905y2"},
	} {
		got, err := LookupMachine(want.Slug)
		if err != nil {
			t.Errorf("LookupMachine(%s): %v", want.Slug, err)
			continue
		}
		if got != want {
			t.Errorf("LookupMachine(%s) = %+v, want %+v", want.Slug, got, want)
		}
	}
}

// TestMachinesManifestRecord: every entry of machines.toml names the balena device manifest its machine was
// checked against (a trailing "# balena-os/<repository> <file>" comment), except the ones its header lists
// as unchecked, which keep the default machine (the slug).
func TestMachinesManifestRecord(t *testing.T) {
	unchecked := map[string]bool{"edge": true, "generic": true, "up-core": true, "up-core-plus": true, "up-squared": true}
	entry := regexp.MustCompile(`^  \{ slug = "([^"]+)",.*\}(,)?( # balena-os/balena-[a-z0-9-]+ [a-z0-9-]+\.(coffee|json)( \(.*\))?)?$`)
	entries, checked := 0, 0
	for i, line := range strings.Split(string(machinesTOML), "\n") {
		if !strings.HasPrefix(line, "  { slug") {
			continue
		}
		m := entry.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("machines.toml line %d: not an entry with an optional manifest comment: %s", i+1, line)
			continue
		}
		entries++
		switch slug, hasManifest := m[1], m[3] != ""; {
		case unchecked[slug] && (hasManifest || strings.Contains(line, "machine =")):
			t.Errorf("machines.toml line %d: %s is listed as unchecked but names a manifest or a machine", i+1, slug)
		case !unchecked[slug] && !hasManifest:
			t.Errorf("machines.toml line %d: %s names no manifest its machine was checked against", i+1, slug)
		case hasManifest:
			checked++
		}
	}
	if want := entries - len(unchecked); checked != want || !strings.Contains(string(machinesTOML), fmt.Sprintf("for %d of the %d device types", checked, entries)) {
		t.Errorf("machines.toml: %d of %d entries checked against a manifest, want %d and the header to say so", checked, entries, want)
	}
}

// TestMachinesAgreeWithRegistry: every device type hostos builds images for renders templates the way its
// build entry says, and the ones balena does not publish are in the vocabulary too.
func TestMachinesAgreeWithRegistry(t *testing.T) {
	for _, dt := range DeviceTypes() {
		m, err := LookupMachine(dt.Slug)
		if err != nil {
			t.Errorf("%s: %v", dt.Slug, err)
			continue
		}
		if m.Arch != dt.Arch || m.Yocto != dt.Machine {
			t.Errorf("%s: vocabulary says arch %s machine %s, build registry arch %s machine %s", dt.Slug, m.Arch, m.Yocto, dt.Arch, dt.Machine)
		}
	}
}

func TestLookupMachineNearMatches(t *testing.T) {
	for _, tc := range []struct {
		slug string
		want string // the error's text after the slug
	}{
		{"raspberrypi4", `: did you mean raspberrypi4-64, raspberrypi400-64, raspberrypi4-unipi-neuron, raspberrypi4-edatec-sensing?`},
		{"raspbery-pi2", `: did you mean raspberry-pi2, raspberry-pi?`},
		{"intel-nuk", `: did you mean intel-nuc?`},
		{"genericx86-64", `: did you mean genericx86-64-ext?`},
		{"toaster", `: no known device type is near it`},
		{"", `: no known device type is near it`},
	} {
		_, err := LookupMachine(tc.slug)
		if !errors.Is(err, ErrUnknownDeviceType) {
			t.Errorf("LookupMachine(%q) = %v, want ErrUnknownDeviceType", tc.slug, err)
			continue
		}
		prefix := `unknown device type "` + tc.slug + `"`
		if got := err.Error(); got != prefix+tc.want {
			t.Errorf("LookupMachine(%q):\n got %s\nwant %s", tc.slug, got, prefix+tc.want)
		}
	}
}

func TestNearSlugs(t *testing.T) {
	known := []string{"abc", "abcd", "abd", "xyz"}
	if got, want := NearSlugs("ab", known), []string{"abc", "abd", "abcd"}; !reflect.DeepEqual(got, want) {
		t.Errorf("NearSlugs(ab) = %v, want %v", got, want)
	}
	if got, want := NearSlugs("abx", known), []string{"abc", "abd", "abcd"}; !reflect.DeepEqual(got, want) {
		t.Errorf("NearSlugs(abx) = %v, want %v", got, want)
	}
	if got := NearSlugs("qqqqqqqq", known); got != nil {
		t.Errorf("NearSlugs(qqqqqqqq) = %v, want none", got)
	}
}

func TestParseMachinesRejects(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`machines = []`, "no device types"},
		{`machines = [{ slug = "a", name = "A", arch = "sparc" }]`, `unknown arch "sparc"`},
		{`machines = [{ slug = "a", arch = "amd64" }]`, "missing name"},
		{`machines = [{ slug = "A b", name = "A", arch = "amd64" }]`, "not a lower-case slug"},
		{`machines = [{ slug = "a", name = "A", arch = "amd64", colour = "red" }]`, "colour"},
		{`machines = [{ slug = "a", name = "A", arch = "amd64" }, { slug = "a", name = "B", arch = "amd64" }]`, `duplicate slug "a"`},
	} {
		_, err := ParseMachines([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseMachines(%s) = %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
}
