// Package inspect reports what a balenaOS disk image holds: layout, device type, OS version, config.json.
package inspect

import (
	"bytes"
	"crypto/md5"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/config/apps"
	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/bootfs"
	"github.com/hostos/hostos/rootfs/enginestore"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/fat"
	"github.com/hostos/hostos/rootfs/hostappfs"
	"github.com/hostos/hostos/rootfs/probe"
)

// Report is what Inspect finds.
type Report struct {
	Image          string          `json:"image"`
	Size           int64           `json:"size"`
	PartitionTable string          `json:"partitionTable"`
	TableProblem   string          `json:"tableProblem,omitempty"` // why the table is invalid; nothing else is read then
	DiskID         string          `json:"diskId"`
	Partitions     []Partition     `json:"partitions"`
	BootPartition  int             `json:"bootPartition"`
	DeviceType     string          `json:"deviceType,omitempty"`
	Arch           string          `json:"arch,omitempty"`
	OSName         string          `json:"osName,omitempty"`
	OSVersion      string          `json:"osVersion,omitempty"`
	OSReleaseFrom  string          `json:"osReleaseFrom,omitempty"`
	Config         *config.Config  `json:"config,omitempty"`
	Fingerprint    FingerprintInfo `json:"fingerprint"`
	Preloaded      *Preloaded      `json:"preloaded,omitempty"`
	// BootHealth is what a check of the boot partition's FAT found, as fsck.vfat would.
	BootHealth *fat.Report `json:"bootHealth,omitempty"`
}

// Partition is one partition of the image.
type Partition struct {
	Number     int    `json:"number"`
	Label      string `json:"label"`
	Filesystem string `json:"filesystem"`
	Start      int64  `json:"start"`
	Size       int64  `json:"size"`
	Bootable   bool   `json:"bootable,omitempty"`
}

// FingerprintInfo says whether balenaos.fingerprint matches the boot partition's files.
type FingerprintInfo struct {
	Present  bool   `json:"present"`
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
}

// Option configures Inspect.
type Option func(*options)

type options struct{ secrets bool }

// WithSecrets leaves apiKey, deviceApiKey and similar secrets unredacted.
func WithSecrets() Option { return func(o *options) { o.secrets = true } }

// Inspect reads d's partition table and the files that describe the OS. A table that fails
// partition.Check gives a Report of the table alone, with TableProblem set, and an error wrapping
// partition.ErrInvalidTable.
func Inspect(d disk.Disk, opts ...Option) (*Report, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	t, err := partition.Read(d, d.Size(), d.SectorSize())
	if errors.Is(err, partition.ErrInvalidTable) {
		// Show the table as it is, marked invalid, and read nothing through it.
		raw, rerr := partition.ReadUnchecked(d, d.Size(), d.SectorSize())
		if rerr != nil {
			return nil, fmt.Errorf("%s: %w", d.Path(), err)
		}
		r := newReport(d, raw)
		r.TableProblem = err.Error()
		for _, p := range raw.Partitions {
			r.Partitions = append(r.Partitions, Partition{Number: p.Number, Label: p.Name, Start: p.Start, Size: p.Size, Bootable: p.Bootable})
		}
		return r, fmt.Errorf("%s: %w", d.Path(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Path(), err)
	}
	r := newReport(d, t)
	for _, p := range t.Partitions {
		fstype, label, _ := probe.Filesystem(d, p.Start, p.Size)
		if label == "" {
			label = p.Name
		}
		r.Partitions = append(r.Partitions, Partition{Number: p.Number, Label: label, Filesystem: fstype, Start: p.Start, Size: p.Size, Bootable: p.Bootable})
	}
	boot, err := bootfs.Locate(d, t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Path(), err)
	}
	r.BootPartition = boot.Number
	bfs, err := fat.Open(d, boot.Start, boot.Size)
	if err != nil {
		return nil, fmt.Errorf("%s: boot partition %d: %w", d.Path(), boot.Number, err)
	}
	if h, err := bfs.Check(); err == nil {
		r.BootHealth = &h
	}
	if b, err := bfs.ReadFile("/device-type.json"); err == nil {
		if m, err := config.ParseManifest(b); err == nil {
			r.DeviceType, r.Arch = m.Slug, m.Arch
		}
	}
	if b, err := bfs.ReadFile("/config.json"); err == nil {
		c, err := config.ParseConfig(b)
		if err != nil {
			return nil, fmt.Errorf("%s: config.json: %w", d.Path(), err)
		}
		if !o.secrets {
			c = config.Redact(c)
		}
		r.Config = &c
		if r.DeviceType == "" {
			r.DeviceType, _ = c.String("deviceType")
		}
	}
	r.osRelease(d, t, bfs)
	r.Fingerprint = verifyFingerprint(bfs)
	r.Preloaded = preloaded(d, t)
	return r, nil
}

func newReport(d disk.Disk, t *partition.Table) *Report {
	r := &Report{Image: d.Path(), Size: d.Size(), PartitionTable: string(t.Kind)}
	if t.Kind == partition.GPT {
		r.DiskID = t.DiskGUID.String()
	} else {
		r.DiskID = fmt.Sprintf("0x%08x", t.DiskSignature)
	}
	return r
}

func (r *Report) osRelease(d disk.Disk, t *partition.Table, bfs *fat.FS) {
	if root, err := probe.Locate(d, t, partition.RootA.ImageLabels()...); err == nil {
		if o, err := hostappfs.OpenSlot(d, root.Start, root.Size); err == nil {
			if b, err := o.ReadFile("/etc/os-release"); err == nil {
				r.setOS(b, fmt.Sprintf("partition %d /etc/os-release%s", root.Number, map[hostappfs.Layout]string{hostappfs.Hostapp: " in the hostapp container"}[o.Layout()]))
			}
			if r.OSVersion != "" {
				return
			}
		}
	}
	if b, err := bfs.ReadFile("/os-release"); err == nil {
		r.setOS(b, "boot partition /os-release")
	}
}

func (r *Report) setOS(b []byte, from string) {
	r.OSName, r.OSVersion, r.OSReleaseFrom = config.ParseOSRelease(b)["NAME"], config.OSVersion(b), from
}

func verifyFingerprint(bfs *fat.FS) FingerprintInfo {
	fp, err := bfs.ReadFile("/balenaos.fingerprint")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return FingerprintInfo{}
		}
		return FingerprintInfo{Present: true, Problem: err.Error()}
	}
	sums := map[string][16]byte{}
	err = bfs.Walk(func(p string, e fat.DirEntry) error {
		if e.IsDir {
			return nil
		}
		b, err := bfs.ReadFile("/" + p)
		if err != nil {
			return err
		}
		sums[p] = md5.Sum(b)
		return nil
	})
	if err == nil {
		err = config.VerifyFingerprint(fp, sums)
	}
	if err != nil {
		return FingerprintInfo{Present: true, Problem: err.Error()}
	}
	return FingerprintInfo{Present: true, Verified: true}
}

// Preloaded is what the data partition holds for the supervisor: the apps of apps.json and the images
// of the engine store.
type Preloaded struct {
	Apps    []PreloadedApp `json:"apps,omitempty"`
	Images  []EngineImage  `json:"images,omitempty"`
	Problem string         `json:"problem,omitempty"` // why apps.json or the store could not be read
}

// PreloadedApp is one app of apps.json, with its release.
type PreloadedApp struct {
	UUID     string             `json:"uuid"`
	Name     string             `json:"name"`
	Release  string             `json:"release"`
	Services []PreloadedService `json:"services"`
}

// PreloadedService is one service of a preloaded release; ImageID is empty when the engine store lacks
// its image.
type PreloadedService struct {
	Name    string `json:"name"`
	Image   string `json:"image"`
	ImageID string `json:"imageId,omitempty"`
	Size    int64  `json:"size,omitempty"`
}

// EngineImage is one reference of the engine store's repositories.json, with the engine's size.
type EngineImage struct {
	Reference string `json:"reference"`
	ID        string `json:"id"`
	Size      int64  `json:"size"`
}

// preloaded reads apps.json and the engine store of the data partition; nil when there is neither.
func preloaded(d disk.Disk, t *partition.Table) *Preloaded {
	data, err := probe.Locate(d, t, "resin-data", "balena-data")
	if err != nil {
		return nil
	}
	fsys, err := ext4.Open(d, data.Start, data.Size)
	if err != nil {
		return nil
	}
	p := &Preloaded{}
	const store = "/docker/image/overlay2"
	ids := map[string]string{}
	sizes := map[string]int64{}
	if b, err := fsys.ReadFile(store + "/repositories.json"); err == nil {
		var repos struct{ Repositories map[string]map[string]string }
		if err := json.Unmarshal(b, &repos); err != nil {
			p.Problem = "repositories.json: " + err.Error()
		}
		for _, refs := range repos.Repositories {
			for ref, id := range refs {
				ids[ref] = id
				if _, ok := sizes[id]; !ok {
					sizes[id] = imageSize(fsys, store, id)
				}
				p.Images = append(p.Images, EngineImage{Reference: ref, ID: id, Size: sizes[id]})
			}
		}
		sort.Slice(p.Images, func(i, j int) bool { return p.Images[i].Reference < p.Images[j].Reference })
	}
	if b, err := fsys.ReadFile("/apps.json"); err == nil {
		f, err := apps.Decode(b)
		if err != nil {
			p.Problem = "apps.json: " + err.Error()
		} else {
			for uuid, app := range f.Apps {
				for commit, rel := range app.Releases {
					a := PreloadedApp{UUID: uuid, Name: app.Name, Release: commit}
					for name, s := range rel.Services {
						a.Services = append(a.Services, PreloadedService{Name: name, Image: s.Image, ImageID: ids[s.Image], Size: sizes[ids[s.Image]]})
					}
					sort.Slice(a.Services, func(i, j int) bool { return a.Services[i].Name < a.Services[j].Name })
					p.Apps = append(p.Apps, a)
				}
			}
			sort.Slice(p.Apps, func(i, j int) bool { return p.Apps[i].UUID < p.Apps[j].UUID })
		}
	}
	if len(p.Apps) == 0 && len(p.Images) == 0 && p.Problem == "" {
		return nil
	}
	return p
}

// imageSize is the engine's size of image id: the sum of its layers' layerdb sizes, -1 when unknown.
func imageSize(fsys *ext4.FS, store, id string) int64 {
	h, err := v1.NewHash(id)
	if err != nil {
		return -1
	}
	b, err := fsys.ReadFile(store + "/imagedb/content/sha256/" + h.Hex)
	if err != nil {
		return -1
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(b))
	if err != nil {
		return -1
	}
	var total int64
	for i := range cfg.RootFS.DiffIDs {
		chain := enginestore.ChainID(cfg.RootFS.DiffIDs[:i+1])
		s, err := fsys.ReadFile(store + "/layerdb/sha256/" + chain.Hex + "/size")
		if err != nil {
			return -1
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(s)), 10, 64)
		if err != nil {
			return -1
		}
		total += n
	}
	return total
}
