package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Manifest is what hostos reads from a device-type.json (balena's device-type manifest).
type Manifest struct {
	Slug    string
	Name    string
	Arch    string
	Aliases []string
	Machine string // yocto.machine; empty for the abstract types (generic, edge)
	// ConfigPartition is the number of the partition holding config.json, counting msdos logical
	// partitions from 5 as Linux does. 0 when the manifest names no partition.
	ConfigPartition int
	// ConfigPath is the path of config.json on that partition, e.g. "/config.json".
	ConfigPath string
	// ConfigImage, when set, names a filesystem image file inside the image that holds config.json
	// (intel-edison ships a zip whose resin-image-edison.hddimg carries it).
	ConfigImage string
}

// HasConfigLocation reports whether the manifest says where config.json lives.
func (m Manifest) HasConfigLocation() bool {
	return m.ConfigPath != "" && (m.ConfigPartition > 0 || m.ConfigImage != "")
}

type rawManifest struct {
	Slug    string   `json:"slug"`
	Name    string   `json:"name"`
	Arch    string   `json:"arch"`
	Aliases []string `json:"aliases"`
	Yocto   *struct {
		Machine string `json:"machine"`
	} `json:"yocto"`
	Configuration *struct {
		Config *struct {
			Partition json.RawMessage `json:"partition"`
			Path      string          `json:"path"`
			Image     string          `json:"image"`
		} `json:"config"`
	} `json:"configuration"`
}

// ParseManifest reads a device-type.json. It understands every form balena uses for
// configuration.config.partition: a number (12), {"primary": N}, {"primary": 4, "logical": L}
// (logical partition L, numbered 4+L), a string "N" or "P:L" (resin-config-inject's notation), and
// configuration.config.image instead of a partition. Unknown fields elsewhere are ignored.
func ParseManifest(data []byte) (Manifest, error) {
	var raw rawManifest
	if err := json.Unmarshal(data, &raw); err != nil {
		return Manifest{}, fmt.Errorf("device-type manifest: %w", err)
	}
	if raw.Slug == "" {
		return Manifest{}, errors.New("device-type manifest: missing slug")
	}
	m := Manifest{Slug: raw.Slug, Name: raw.Name, Arch: raw.Arch, Aliases: raw.Aliases}
	if raw.Arch == "" {
		return Manifest{}, fmt.Errorf("device-type manifest %s: missing arch", raw.Slug)
	}
	if raw.Yocto != nil {
		m.Machine = raw.Yocto.Machine
	}
	if raw.Configuration == nil || raw.Configuration.Config == nil {
		return m, nil
	}
	cfg := raw.Configuration.Config
	m.ConfigPath = cfg.Path
	m.ConfigImage = cfg.Image
	if cfg.Path != "" && !strings.HasPrefix(cfg.Path, "/") {
		return Manifest{}, fmt.Errorf("device-type manifest %s: config path %q is not absolute", raw.Slug, cfg.Path)
	}
	part, err := parsePartitionSpec(cfg.Partition)
	if err != nil {
		return Manifest{}, fmt.Errorf("device-type manifest %s: config partition: %w", raw.Slug, err)
	}
	m.ConfigPartition = part
	if part == 0 && cfg.Image == "" && cfg.Path != "" {
		return Manifest{}, fmt.Errorf("device-type manifest %s: config path %q without partition or image", raw.Slug, cfg.Path)
	}
	return m, nil
}

// parsePartitionSpec turns balena's partition definition into a partition number; 0 for absent/null.
func parsePartitionSpec(raw json.RawMessage) (int, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return 0, err
	}
	switch v := v.(type) {
	case json.Number:
		return partitionNumber(v.String(), "partition")
	case string:
		primary, logical, found := strings.Cut(v, ":")
		p, err := partitionNumber(primary, "primary")
		if err != nil || !found {
			return p, err
		}
		l, err := partitionNumber(logical, "logical")
		if err != nil {
			return 0, err
		}
		return 4 + l, nil
	case map[string]any:
		var p, l int
		for key, val := range v {
			n, ok := val.(json.Number)
			if !ok {
				return 0, fmt.Errorf("%s is %v, not a number", key, val)
			}
			num, err := partitionNumber(n.String(), key)
			if err != nil {
				return 0, err
			}
			switch key {
			case "primary":
				p = num
			case "logical":
				l = num
			default:
				return 0, fmt.Errorf("unknown key %q", key)
			}
		}
		if p == 0 {
			return 0, errors.New("missing primary")
		}
		if l > 0 {
			// Logical partitions live in the extended one and are numbered from 5.
			return 4 + l, nil
		}
		return p, nil
	default:
		return 0, fmt.Errorf("unsupported form %s", raw)
	}
}

func partitionNumber(s, what string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 256 {
		return 0, fmt.Errorf("%s %q is not a partition number", what, s)
	}
	return n, nil
}
