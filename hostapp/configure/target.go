// Package configure prepares a balenaOS image, or a mounted boot partition, for a device or a fleet:
// config.json, NetworkManager keyfiles and the splash logo, validated first and written crash-safely.
package configure

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/bootfs"
	"github.com/hostos/hostos/rootfs/hostappfs"
	"github.com/hostos/hostos/rootfs/probe"
)

// Target is the partition (or directory) holding config.json, with what the image says about itself.
type Target struct {
	FS bootfs.FS
	// Partition is the number of the partition holding config.json; 0 for a directory.
	Partition int
	// ConfigPath is where config.json lives on FS, "/config.json" unless device-type.json says otherwise.
	ConfigPath string
	// DeviceType is the slug from device-type.json, else config.json's deviceType; Aliases come with it.
	DeviceType string
	Aliases    []string
	// osVersion reads VERSION_ID (or VERSION) of the OS once, when first asked: only a splash logo needs
	// it, and reading the root filesystem is most of the work of opening an image.
	osVersion func() string

	// typeFromManifest: DeviceType comes from device-type.json, not from config.json itself.
	typeFromManifest bool
}

// Open finds the partition of d that holds config.json, as balena's tools do: the boot partition (by
// label, device-type.json or number 1), or the partition its device-type.json names.
func Open(d disk.Disk) (*Target, error) {
	t, boot, bfs, err := bootfs.Open(d)
	if err != nil {
		return nil, err
	}
	tg := &Target{FS: bfs, Partition: boot.Number, ConfigPath: "/" + config.ConfigName}
	m, err := tg.manifest()
	if err != nil {
		return nil, err
	}
	if m.ConfigPath != "" && m.ConfigPartition > 0 && m.ConfigPartition != boot.Number {
		p, ok := t.Partition(m.ConfigPartition)
		if !ok {
			return nil, fmt.Errorf("device-type.json puts config.json on partition %d, which the image does not have", m.ConfigPartition)
		}
		if tg.FS, err = bootfs.OpenFAT(d, p); err != nil {
			return nil, fmt.Errorf("config partition: %w", err)
		}
		tg.Partition = p.Number
	}
	tg.osVersion = sync.OnceValue(func() string {
		if root, err := probe.Locate(d, t, partition.RootA.ImageLabels()...); err == nil {
			if b, err := hostappfs.ReadFile(d, root.Start, root.Size, "/etc/os-release"); err == nil {
				if v := config.OSVersion(b); v != "" {
					return v
				}
			}
		}
		return bootOSVersion(bfs)
	})
	tg.finish()
	return tg, nil
}

// OSVersion is VERSION_ID (or VERSION) of the OS, from the root filesystem or else the boot partition's
// /os-release; empty when unknown.
func (tg *Target) OSVersion() string {
	if tg.osVersion == nil {
		return ""
	}
	return tg.osVersion()
}

// bootOSVersion is the version in the boot partition's /os-release, empty when there is none.
func bootOSVersion(boot bootfs.FS) string {
	if b, err := boot.ReadFile("/os-release"); err == nil {
		return config.OSVersion(b)
	}
	return ""
}

// OpenDir uses a boot partition mounted at dir, as /mnt/boot on a device.
func OpenDir(dir string) (*Target, error) {
	d := bootfs.Dir(dir)
	if _, err := d.ModTime("/"); err != nil {
		return nil, fmt.Errorf("boot directory: %w", err)
	}
	tg := &Target{FS: d, ConfigPath: "/" + config.ConfigName}
	if _, err := tg.manifest(); err != nil {
		return nil, err
	}
	tg.osVersion = sync.OnceValue(func() string { return bootOSVersion(d) })
	tg.finish()
	return tg, nil
}

// manifest reads device-type.json, sets the device type and the config.json path it names.
func (tg *Target) manifest() (config.Manifest, error) {
	b, err := tg.FS.ReadFile("/device-type.json")
	if errors.Is(err, fs.ErrNotExist) {
		return config.Manifest{}, nil
	}
	if err != nil {
		return config.Manifest{}, fmt.Errorf("device-type.json: %w", err)
	}
	m, err := config.ParseManifest(b)
	if err != nil {
		return config.Manifest{}, err
	}
	tg.DeviceType, tg.Aliases = m.Slug, m.Aliases
	tg.typeFromManifest = m.Slug != ""
	if m.ConfigPath != "" && m.ConfigImage == "" {
		tg.ConfigPath = path.Clean("/" + m.ConfigPath)
	}
	return m, nil
}

// finish takes the device type from config.json when there is no device-type.json.
func (tg *Target) finish() {
	if tg.DeviceType == "" {
		if c, err := tg.Config(); err == nil {
			tg.DeviceType, _ = c.String("deviceType")
		}
	}
}

// Config reads and parses config.json.
func (tg *Target) Config() (config.Config, error) {
	b, err := tg.FS.ReadFile(tg.ConfigPath)
	if err != nil {
		return config.Config{}, fmt.Errorf("read %s: %w", strings.TrimPrefix(tg.ConfigPath, "/"), err)
	}
	c, err := config.ParseConfig(b)
	if err != nil {
		return config.Config{}, fmt.Errorf("%w (in the image)", err)
	}
	return c, nil
}
