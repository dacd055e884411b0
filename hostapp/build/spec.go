package build

import (
	_ "embed"
	"fmt"
	"path/filepath"

	"github.com/hostos/hostos/config"
)

// Spec is a build specification as written in TOML. Sizes are MiB; zero means the device type's default.
type Spec struct {
	DeviceType     string `toml:"device_type"`
	PartitionTable string `toml:"partition_table"`
	AlignmentMiB   int    `toml:"alignment_mib"`
	ImageSizeMiB   int    `toml:"image_size_mib"`
	Version        string `toml:"version"`
	Development    bool   `toml:"development"`
	Sizes          Sizes  `toml:"sizes"`
	Rootfs         Rootfs `toml:"rootfs"`
	Boot           Boot   `toml:"boot"`
	// Preload, when set, is a release preloaded into resin-data (see Preload).
	Preload *Preload `toml:"preload"`

	// Dir is the directory relative paths in the spec are taken from (the spec file's directory).
	Dir string `toml:"-"`
	// File is the spec file's path ("" for the embedded default): no output may overwrite it.
	File string `toml:"-"`
}

// Sizes are partition sizes in MiB.
type Sizes struct {
	Boot  int `toml:"boot"`
	Root  int `toml:"root"`
	State int `toml:"state"`
	Data  int `toml:"data"`
}

// Rootfs names the root filesystem source: a directory, a tar archive (plain, gzip, xz, zstd), an OCI image
// layout, a docker save archive or an ext4 image. Empty means the embedded default root filesystem.
type Rootfs struct {
	Source string `toml:"source"`
}

// Boot describes the boot partition's contents.
type Boot struct {
	// DeployDir is the base of relative sources in Files (balena's deploy directory).
	DeployDir string `toml:"deploy_dir"`
	// Files is a list of "src:dst" entries with meta-balena's semantics.
	Files []string `toml:"files"`
	// ConfigJSON is a JSON file merged over the default config.json.
	ConfigJSON string `toml:"config_json"`
	// OSRelease overrides the os-release file otherwise taken from the root filesystem.
	OSRelease string `toml:"os_release"`
	// Splash is a PNG written as splash/balena-logo.png.
	Splash string `toml:"splash"`
	// SystemConnections are NetworkManager keyfiles copied into system-connections/.
	SystemConnections []string `toml:"system_connections"`
}

//go:embed default.toml
var defaultSpec []byte

// DefaultSpec returns the embedded default spec: an x86-64 GRUB image of the embedded root filesystem.
func DefaultSpec() (*Spec, error) { return ParseSpec(defaultSpec, "default.toml", "") }

// ParseSpec parses a spec strictly: unknown keys and values of the wrong type are errors naming the file,
// line and key.
func ParseSpec(b []byte, name, dir string) (*Spec, error) {
	var s Spec
	if err := config.DecodeTOML(b, name, &s); err != nil {
		return nil, err
	}
	s.Dir = dir
	if dir != "" {
		s.File = name
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &s, nil
}

func (s *Spec) validate() error {
	switch s.PartitionTable {
	case "", "msdos", "gpt":
	default:
		return fmt.Errorf("key \"partition_table\": %q is neither msdos nor gpt", s.PartitionTable)
	}
	for _, v := range []struct {
		key string
		n   int
	}{
		{"alignment_mib", s.AlignmentMiB}, {"image_size_mib", s.ImageSizeMiB},
		{"sizes.boot", s.Sizes.Boot}, {"sizes.root", s.Sizes.Root},
		{"sizes.state", s.Sizes.State}, {"sizes.data", s.Sizes.Data},
	} {
		if v.n < 0 {
			return fmt.Errorf("key %q: %d is negative", v.key, v.n)
		}
		// 16 TiB is past any card or disk a balenaOS image is flashed to, and far from overflowing
		// the byte sums of a layout.
		if v.n > maxSpecMiB {
			return fmt.Errorf("key %q: %d MiB is more than the %d MiB (16 TiB) an image may have", v.key, v.n, maxSpecMiB)
		}
	}
	if err := s.Preload.validate(); err != nil {
		return err
	}
	for _, f := range s.Boot.Files {
		if _, err := ParseBootFile(f); err != nil {
			return fmt.Errorf("key \"boot.files\": %w", err)
		}
	}
	return nil
}

// maxSpecMiB bounds every size in a spec.
const maxSpecMiB = 16 << 20

// path resolves p relative to the spec's directory.
func (s *Spec) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.Dir, p)
}

// Inputs are the files and directories the spec names, which no output may overwrite.
func (s *Spec) Inputs() []string {
	return append([]string{s.File, s.path(s.Rootfs.Source)}, s.preloadInputs()...)
}

// MaxSpecBytes bounds a spec file.
const MaxSpecBytes = 1 << 20
