package config

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestRegistryParses(t *testing.T) {
	dts, err := ParseDeviceTypes(registryTOML)
	if err != nil {
		t.Fatalf("embedded registry: %v", err)
	}
	if got := DeviceTypes(); len(got) != len(dts) {
		t.Fatalf("DeviceTypes() has %d entries, registry %d", len(got), len(dts))
	}
	list := DeviceTypes()
	for i := 1; i < len(list); i++ {
		if list[i-1].Slug >= list[i].Slug {
			t.Fatalf("DeviceTypes not sorted: %s before %s", list[i-1].Slug, list[i].Slug)
		}
	}
}

// TestRegistryContents checks the entries the image-format contract names.
func TestRegistryContents(t *testing.T) {
	small := Sizes{Boot: 40, Root: 320, State: 20, Data: 192}
	large := Sizes{Boot: 100, Root: 640, State: 80, Data: 192}
	for _, tc := range []struct {
		slug, arch, bootloader, table string
		fat                           int
		sizes                         Sizes
	}{
		{"raspberrypi3", "armv7hf", BootloaderRPi, TableMSDOS, 32, small},
		{"raspberrypi4-64", "aarch64", BootloaderRPi, TableMSDOS, 32, small},
		{"raspberrypi5", "aarch64", BootloaderBalenaBL, TableMSDOS, 32, small},
		{"genericx86-64-ext", "amd64", BootloaderGRUB, TableMSDOS, 16, small},
		{"intel-nuc", "amd64", BootloaderGRUB, TableMSDOS, 16, small},
		{"imx8mm-var-dart", "aarch64", BootloaderUBoot, TableGPT, 16, large},
		{"generic-amd64-efi", "amd64", BootloaderGRUBEFI, TableGPT, 16, small},
	} {
		dt, err := LookupDeviceType(tc.slug)
		if err != nil {
			t.Errorf("%s: %v", tc.slug, err)
			continue
		}
		if dt.Arch != tc.arch || dt.Bootloader != tc.bootloader || dt.PartitionTable != tc.table ||
			dt.BootFAT != tc.fat || dt.Sizes != tc.sizes || dt.AlignmentMiB != 4 ||
			dt.ConfigPartition != 1 || dt.ConfigPath != "/config.json" {
			t.Errorf("%s: got %+v", tc.slug, dt)
		}
	}
}

func TestLookupUnknownListsSlugs(t *testing.T) {
	_, err := LookupDeviceType("raspberrypi9")
	if !errors.Is(err, ErrUnknownDeviceType) {
		t.Fatalf("error %v does not wrap ErrUnknownDeviceType", err)
	}
	for _, dt := range DeviceTypes() {
		if !strings.Contains(err.Error(), dt.Slug) {
			t.Errorf("error %q does not list %s", err, dt.Slug)
		}
	}
}

func TestParseDeviceTypesRejects(t *testing.T) {
	const good = `[[devicetype]]
slug = "x"
name = "X"
arch = "amd64"
machine = "m"
bootloader = "grub"
partition_table = "gpt"
boot_fat = 16
sizes = { boot = 40, root = 320, state = 20, data = 192 }
alignment_mib = 4
config_partition = 1
config_path = "/config.json"
`
	if _, err := ParseDeviceTypes([]byte(good)); err != nil {
		t.Fatalf("good entry rejected: %v", err)
	}
	for _, tc := range []struct {
		name, doc, wantErr string
	}{
		{"unknown field", good + "colour = \"red\"\n", "colour"},
		{"unknown size field", strings.Replace(good, "data = 192", "data = 192, swap = 1", 1), `registry:9: unknown key "devicetype.swap"`},
		{"unknown table", good + "[other]\n", "other"},
		{"duplicate", good + good, "duplicate slug"},
		{"empty", "", "no device types"},
		{"bad arch", strings.Replace(good, `"amd64"`, `"x86"`, 1), "arch"},
		{"bad bootloader", strings.Replace(good, `"grub"`, `"lilo"`, 1), "bootloader"},
		{"bad table", strings.Replace(good, `"gpt"`, `"apm"`, 1), "partition table"},
		{"bad fat", strings.Replace(good, "boot_fat = 16", "boot_fat = 12", 1), "boot_fat"},
		{"zero size", strings.Replace(good, "state = 20", "state = 0", 1), "size"},
		{"missing machine", strings.Replace(good, `machine = "m"`, "", 1), "machine"},
		{"relative config path", strings.Replace(good, `"/config.json"`, `"config.json"`, 1), "config_path"},
		{"bad slug", strings.Replace(good, `slug = "x"`, `slug = "X Y"`, 1), "slug"},
		{"wrong type", strings.Replace(good, "boot_fat = 16", `boot_fat = "16"`, 1), "device-type registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDeviceTypes([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// TestManifestsAgreeWithRegistry checks that every device type's device-type.json, real or synthesized,
// reads back with the registry's slug, arch, machine and config location.
func TestManifestsAgreeWithRegistry(t *testing.T) {
	for _, dt := range DeviceTypes() {
		data, err := dt.Manifest()
		if err != nil {
			t.Errorf("%s: %v", dt.Slug, err)
			continue
		}
		if !json.Valid(data) {
			t.Errorf("%s: manifest is not JSON", dt.Slug)
			continue
		}
		m, err := ParseManifest(data)
		if err != nil {
			t.Errorf("%s: %v", dt.Slug, err)
			continue
		}
		if m.Slug != dt.Slug || m.Arch != dt.Arch || m.Machine != dt.Machine ||
			m.ConfigPartition != dt.ConfigPartition || m.ConfigPath != dt.ConfigPath || m.Name == "" {
			t.Errorf("%s: manifest %+v disagrees with registry %+v", dt.Slug, m, dt)
		}
	}
}

// TestRealManifestsAreBalenas checks that the embedded manifests are balena's entries unchanged.
func TestRealManifestsAreBalenas(t *testing.T) {
	data, err := os.ReadFile(referenceFile(t, "balena-device-types.json"))
	if err != nil {
		t.Fatal(err)
	}
	var all []map[string]any
	if err := json.Unmarshal(data, &all); err != nil {
		t.Fatal(err)
	}
	bySlug := map[string]map[string]any{}
	for _, e := range all {
		slug, _ := e["slug"].(string)
		bySlug[slug] = e
	}
	entries, err := manifestFS.ReadDir("devicetypes")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatal("no embedded manifests")
	}
	for _, e := range entries {
		slug := strings.TrimSuffix(e.Name(), ".json")
		dt, err := LookupDeviceType(slug)
		if err != nil {
			t.Errorf("embedded manifest %s has no registry entry: %v", e.Name(), err)
			continue
		}
		got, err := dt.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		var gotAny map[string]any
		if err := json.Unmarshal(got, &gotAny); err != nil {
			t.Fatal(err)
		}
		if want, ok := bySlug[slug]; !ok || !reflect.DeepEqual(gotAny, want) {
			t.Errorf("%s: embedded manifest differs from balena's entry", slug)
		}
	}
	// Every registry slug balena publishes must use balena's manifest.
	for _, dt := range DeviceTypes() {
		if _, published := bySlug[dt.Slug]; !published {
			continue
		}
		if _, err := manifestFS.ReadFile("devicetypes/" + dt.Slug + ".json"); err != nil {
			t.Errorf("%s is in balena's list but its manifest is not embedded", dt.Slug)
		}
	}
}

func TestSynthesizedManifestLogicalPartition(t *testing.T) {
	dt, err := LookupDeviceType("raspberrypi5")
	if err != nil {
		t.Fatal(err)
	}
	dt.ConfigPartition = 5 // first logical partition of an msdos table
	data, err := dt.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get("configuration.config.partition"); !reflect.DeepEqual(v, map[string]any{"primary": json.Number("4"), "logical": json.Number("1")}) {
		t.Fatalf("partition written as %v", v)
	}
	m, err := ParseManifest(data)
	if err != nil || m.ConfigPartition != 5 {
		t.Fatalf("read back %+v, %v", m, err)
	}
}
