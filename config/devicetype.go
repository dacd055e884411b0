// Package config holds the pure codecs for balenaOS configuration: device types and their manifests,
// config.json, the boot partition fingerprint and os-release.
package config

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/pelletier/go-toml/v2"
)

// Bootloaders a device type can name.
const (
	BootloaderRPi      = "rpi"               // Raspberry Pi firmware (config.txt, cmdline.txt)
	BootloaderUBoot    = "u-boot"            // U-Boot with resinOS_uEnv.txt and bootcount.env
	BootloaderGRUB     = "grub"              // GRUB, legacy BIOS or EFI, grubenv on the boot partition
	BootloaderGRUBEFI  = "grub-efi"          // GRUB as \EFI\BOOT\BOOTX64.EFI, grubenv on the boot partition
	BootloaderBalenaBL = "balena-bootloader" // balena's kexec bootloader with bootenv (Raspberry Pi 5)
)

// Partition table types.
const (
	TableMSDOS = "msdos"
	TableGPT   = "gpt"
)

// ErrUnknownDeviceType is returned by LookupDeviceType for a slug not in the registry.
var ErrUnknownDeviceType = errors.New("unknown device type")

// DeviceType describes how to build a balenaOS image for one kind of device.
type DeviceType struct {
	Slug            string `toml:"slug"`            // balena device-type slug, e.g. "raspberrypi4-64"
	Name            string `toml:"name"`            // human name
	Arch            string `toml:"arch"`            // balena architecture: armv7hf, aarch64, amd64...
	Machine         string `toml:"machine"`         // Yocto MACHINE
	Bootloader      string `toml:"bootloader"`      // one of the Bootloader constants
	PartitionTable  string `toml:"partition_table"` // TableMSDOS or TableGPT
	BootFAT         int    `toml:"boot_fat"`        // 16 or 32
	Sizes           Sizes  `toml:"sizes"`
	AlignmentMiB    int    `toml:"alignment_mib"`    // every partition boundary is a multiple of this
	ConfigPartition int    `toml:"config_partition"` // partition number holding config.json
	ConfigPath      string `toml:"config_path"`      // path of config.json on that partition
}

// Sizes are partition sizes in MiB. Root is the size of each of the two root slots; Data is the size at
// build time (the OS grows it to fill the disk on first boot).
type Sizes struct {
	Boot  int `toml:"boot"`
	Root  int `toml:"root"`
	State int `toml:"state"`
	Data  int `toml:"data"`
}

//go:embed devicetypes.toml
var registryTOML []byte

//go:embed devicetypes/*.json
var manifestFS embed.FS

var knownArches = map[string]bool{
	"rpi": true, "armv5e": true, "armv6": true, "armv7hf": true, "aarch64": true,
	"i386": true, "i386-nlp": true, "amd64": true,
}

var knownBootloaders = map[string]bool{
	BootloaderRPi: true, BootloaderUBoot: true, BootloaderGRUB: true,
	BootloaderGRUBEFI: true, BootloaderBalenaBL: true,
}

var slugPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`) })

// ParseDeviceTypes decodes a device-type registry in TOML ([[devicetype]] tables). Unknown fields,
// missing fields, impossible values and duplicate slugs are errors.
func ParseDeviceTypes(data []byte) ([]DeviceType, error) {
	var doc struct {
		DeviceType []DeviceType `toml:"devicetype"`
	}
	if err := DecodeTOML(data, "device-type registry", &doc); err != nil {
		return nil, err
	}
	if len(doc.DeviceType) == 0 {
		return nil, errors.New("device-type registry: no device types")
	}
	seen := make(map[string]bool, len(doc.DeviceType))
	for i, dt := range doc.DeviceType {
		if err := dt.validate(); err != nil {
			return nil, fmt.Errorf("device-type registry: entry %d: %w", i+1, err)
		}
		if seen[dt.Slug] {
			return nil, fmt.Errorf("device-type registry: duplicate slug %q", dt.Slug)
		}
		seen[dt.Slug] = true
	}
	return doc.DeviceType, nil
}

func (dt DeviceType) validate() error {
	switch {
	case !slugPattern().MatchString(dt.Slug):
		return fmt.Errorf("device type slug %q is not a lower-case slug", dt.Slug)
	case dt.Name == "":
		return fmt.Errorf("device type %s: missing name", dt.Slug)
	case !knownArches[dt.Arch]:
		return fmt.Errorf("device type %s: unknown arch %q", dt.Slug, dt.Arch)
	case dt.Machine == "":
		return fmt.Errorf("device type %s: missing machine", dt.Slug)
	case !knownBootloaders[dt.Bootloader]:
		return fmt.Errorf("device type %s: unknown bootloader %q", dt.Slug, dt.Bootloader)
	case dt.PartitionTable != TableMSDOS && dt.PartitionTable != TableGPT:
		return fmt.Errorf("device type %s: partition table %q is neither msdos nor gpt", dt.Slug, dt.PartitionTable)
	case dt.BootFAT != 16 && dt.BootFAT != 32:
		return fmt.Errorf("device type %s: boot_fat %d is neither 16 nor 32", dt.Slug, dt.BootFAT)
	case dt.Sizes.Boot <= 0 || dt.Sizes.Root <= 0 || dt.Sizes.State <= 0 || dt.Sizes.Data <= 0:
		return fmt.Errorf("device type %s: every partition size must be positive, got %+v", dt.Slug, dt.Sizes)
	case dt.AlignmentMiB <= 0:
		return fmt.Errorf("device type %s: alignment_mib %d must be positive", dt.Slug, dt.AlignmentMiB)
	case dt.ConfigPartition <= 0:
		return fmt.Errorf("device type %s: config_partition %d must be positive", dt.Slug, dt.ConfigPartition)
	case !strings.HasPrefix(dt.ConfigPath, "/"):
		return fmt.Errorf("device type %s: config_path %q must be absolute", dt.Slug, dt.ConfigPath)
	}
	return nil
}

// DeviceTypes returns the built-in device types sorted by slug. The embedded registry is checked by the
// package tests; should it ever fail to parse, the list is empty and LookupDeviceType reports why.
func DeviceTypes() []DeviceType {
	dts, err := ParseDeviceTypes(registryTOML)
	if err != nil {
		return nil
	}
	sort.Slice(dts, func(i, j int) bool { return dts[i].Slug < dts[j].Slug })
	return dts
}

// LookupDeviceType returns the built-in device type with the given slug. An unknown slug gives an error
// wrapping ErrUnknownDeviceType that lists the known slugs.
func LookupDeviceType(slug string) (DeviceType, error) {
	dts, err := ParseDeviceTypes(registryTOML)
	if err != nil {
		return DeviceType{}, fmt.Errorf("built-in %w", err)
	}
	known := make([]string, 0, len(dts))
	for _, dt := range dts {
		if dt.Slug == slug {
			return dt, nil
		}
		known = append(known, dt.Slug)
	}
	sort.Strings(known)
	return DeviceType{}, fmt.Errorf("device type %q: %w (known: %s)", slug, ErrUnknownDeviceType, strings.Join(known, ", "))
}

// Manifest returns the device-type.json written to the boot partition. For slugs balena publishes, it is
// balena's own manifest as its API serves it; for the others it is synthesized in the same shape, with
// configuration.config naming the config partition and path.
func (dt DeviceType) Manifest() ([]byte, error) {
	data, err := fs.ReadFile(manifestFS, "devicetypes/"+dt.Slug+".json")
	if err == nil {
		return data, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("device type %s manifest: %w", dt.Slug, err)
	}
	if err := dt.validate(); err != nil {
		return nil, err
	}
	m := map[string]any{
		"version": 1,
		"slug":    dt.Slug,
		"aliases": []string{dt.Slug},
		"name":    dt.Name,
		"arch":    dt.Arch,
		"state":   "NEW",
		"yocto": map[string]any{
			"machine":        dt.Machine,
			"image":          "balena-image",
			"fstype":         "balenaos-img",
			"deployArtifact": "balena-image-" + dt.Machine + ".balenaos-img",
			"compressed":     true,
		},
		"configuration": map[string]any{
			"config": map[string]any{
				"partition": manifestPartition(dt),
				"path":      dt.ConfigPath,
			},
		},
	}
	c, err := configFromGo(m)
	if err != nil {
		return nil, fmt.Errorf("device type %s manifest: %w", dt.Slug, err)
	}
	return c.Encode(), nil
}

// manifestPartition writes the config partition the way balena's manifests do: {"primary": N}, or for
// a logical partition of an msdos table (numbered 5 and up, inside the extended partition 4)
// {"primary": 4, "logical": N-4}.
func manifestPartition(dt DeviceType) map[string]any {
	if dt.PartitionTable == TableMSDOS && dt.ConfigPartition > 4 {
		return map[string]any{"primary": 4, "logical": dt.ConfigPartition - 4}
	}
	return map[string]any{"primary": dt.ConfigPartition}
}

// DecodeTOML decodes the TOML document data, called name in errors, into v strictly: an unknown key or
// a value of the wrong type is a one-line error naming the file, line and key ("spec.toml:3: unknown key
// \"colour\"").
func DecodeTOML(data []byte, name string, v any) error {
	err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(v)
	if err == nil {
		return nil
	}
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		e := strict.Errors[0]
		row, _ := e.Position()
		return fmt.Errorf("%s:%d: unknown key %q", name, row, strings.Join(e.Key(), "."))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		if key := strings.Join(de.Key(), "."); key != "" {
			return fmt.Errorf("%s:%d: key %q: %s", name, row, key, de.Error())
		}
		return fmt.Errorf("%s:%d: %s", name, row, de.Error())
	}
	return fmt.Errorf("%s: %w", name, err)
}
