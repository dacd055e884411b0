// Package preload puts a release's container images and its target state into the data partition of a balenaOS disk image, offline and without a daemon or root.
package preload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/config/apps"
	"github.com/hostos/hostos/config/compose"
	"github.com/hostos/hostos/hostapp/container"
	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/bootfs"
	"github.com/hostos/hostos/rootfs/enginestore"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/fat"
	"github.com/hostos/hostos/rootfs/probe"
	"github.com/hostos/hostos/rootfs/tree"
)

// DataLabels are the labels of the data partition, balenaOS's current one first.
var DataLabels = []string{"resin-data", "balena-data"}

// AppsJSON is where the supervisor reads the preloaded target state on the data partition.
const AppsJSON = "/apps.json"

// Paths balenaOS lays out on the data partition: without ResetMarker the OS wipes the partition at boot.
const (
	ResetMarker = "/remove_me_to_reset"
	StateDir    = "/resin-data"
)

var (
	// ErrCompressed marks a compressed image, which can only be preloaded into a new file.
	ErrCompressed = errors.New("compressed image")
	// ErrAppsJSON means the data partition already holds another apps.json.
	ErrAppsJSON = errors.New("apps.json already present")
)

// Options is one preload.
type Options struct {
	// Compose is a compose file's content (exclusive with Image); ComposeFile names it in messages and
	// ComposeDir is where env_file paths are read from.
	Compose     []byte
	ComposeFile string
	ComposeDir  string
	// Image is the source of a single-container release, which gets balena's default compose.
	Image string
	// Images maps a service name to the source of its image, overriding "docker://" + its image:.
	// A source is an OCI layout directory, a docker save or OCI archive, or docker://registry/repo:tag.
	Images map[string]string
	// Release names the app and release; its Images are filled in here.
	Release apps.Release
	// Pin sets pinDevice; Force replaces an apps.json that differs.
	Pin, Force bool
	// Supervisor, [IMAGE=]SOURCE, preloads the supervisor image tagged as balenaOS's docker-disk recipe
	// tags it (see supervisor); SupervisorVersion is its version. Alone, without a compose file or an
	// image, it writes no apps.json.
	Supervisor, SupervisorVersion string
	// Grow grows the image file, the partition table and the data partition when the release does not
	// fit; the data partition must be the last one.
	Grow bool
	// Registry says how to reach registries; its Platform is taken from the image's device type.
	Registry container.Options
	// Time, when set, is the time of the new inodes.
	Time time.Time
	// Progress follows the layers read; Log receives warnings and what is skipped.
	Progress func(done, total int64)
	Log      func(msg string)
}

// Result says what a preload wrote.
type Result struct {
	Image    string    `json:"image"`
	Output   string    `json:"output"`
	Platform string    `json:"platform"`
	AppUUID  string    `json:"appUuid"`
	AppName  string    `json:"appName"`
	Commit   string    `json:"commit"`
	Services []Service `json:"services"`
	// Supervisor is the supervisor image preloaded with Options.Supervisor, named by its
	// balena_supervisor tag.
	Supervisor *Service `json:"supervisor,omitempty"`
	// LayerBytes is the engine size of the layers written now.
	LayerBytes int64 `json:"layerBytes"`
	// Changed is false when the image already held all of it.
	Changed bool `json:"changed"`
	// DataBytes is the data partition's size, grown with Options.Grow.
	DataBytes int64    `json:"dataBytes"`
	Warnings  []string `json:"warnings,omitempty"`
}

// Service is one preloaded service.
type Service struct {
	Name    string `json:"name"`
	Image   string `json:"image"`   // as apps.json names it
	ImageID string `json:"imageId"` // the engine's image id
	Size    int64  `json:"size"`
}

// source is one image to open and store, with the services using it.
type source struct {
	ref      string // where it is read from
	tags     []string
	digest   v1.Hash // from a digest reference
	repo     string  // registry repository, for a registry source
	services []string
	img      v1.Image
	saved    bool // a docker save archive, read through savedImage
}

// facts are what the preload reads from the image before writing.
type facts struct {
	platform v1.Platform
	data     partition.Partition
	appsJSON []byte // nil when absent
	reset    bool   // remove_me_to_reset present
}

// Preload writes the release into the data partition of image, or of a copy written to output. The
// image is never changed while work is in progress: the work happens on a copy beside the destination,
// renamed into place once complete and synced, so an interruption leaves the destination as it was.
// Only the data partition's bytes change.
func Preload(ctx context.Context, image, output string, o Options) (*Result, error) {
	logf := o.Log
	if logf == nil {
		logf = func(string) {}
	}
	project, warnings, err := o.project()
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		logf(w)
	}
	var (
		sources   []*source
		file      *apps.File
		appsBytes []byte // nil: no apps.json to write
	)
	if project != nil {
		var names map[string]string
		if sources, names, err = o.sources(project); err != nil {
			return nil, err
		}
		rel := o.Release
		rel.Images = names
		if file, err = apps.FromCompose(project, rel, o.Pin); err != nil {
			return nil, err
		}
		if appsBytes, err = file.Encode(); err != nil {
			return nil, err
		}
	}
	var sup *source
	if o.Supervisor != "" {
		if sup, err = supervisor(o.Supervisor, o.SupervisorVersion); err != nil {
			return nil, err
		}
		sources = append(sources, sup)
	}

	algo, err := compression(image)
	if err != nil {
		return nil, err
	}
	dest := image
	if output != "" {
		if err := disk.CheckOutput(output, image); err != nil {
			return nil, err
		}
		dest = output
	} else if algo != "" {
		return nil, fmt.Errorf("%s is %s-compressed; give --output: %w", image, algo, ErrCompressed)
	}
	si, err := os.Stat(image)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if !si.Mode().IsRegular() {
		return nil, fmt.Errorf("image %s: not a regular file", image)
	}
	var in *disk.File
	if output == "" {
		// The writers' lock on the image being preloaded in place, held until it is replaced.
		if in, err = disk.Open(image, true); err != nil {
			return nil, err
		}
		defer in.Close()
	}
	prepare := func(p string) (*facts, error) {
		f, err := readFacts(p)
		if err != nil {
			return nil, err
		}
		if appsBytes != nil && f.appsJSON != nil && string(f.appsJSON) != string(appsBytes) && !o.Force {
			return nil, fmt.Errorf("%s: the data partition holds another apps.json (--force replaces it): %w", image, ErrAppsJSON)
		}
		reg := o.Registry
		reg.Platform = f.platform
		for _, s := range sources {
			if s.img, err = container.Open(ctx, s.ref, reg); err != nil {
				return nil, fmt.Errorf("image of %s: %w", strings.Join(s.services, ", "), err)
			}
			if sizes, ok := savedLayers(s.ref); ok {
				s.img, s.saved = savedImage{Image: s.img, sizes: sizes}, true
			}
		}
		return f, nil
	}
	var fa *facts
	if algo == "" {
		if fa, err = prepare(image); err != nil {
			return nil, err
		}
	}

	// The work directory beside the destination holds the copy and the staged store; only the user can
	// enter it.
	work, release, err := disk.WorkDir(filepath.Dir(dest), "."+filepath.Base(dest)+".hostos-")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	defer release()
	cp := filepath.Join(work, "image")
	if algo != "" {
		err = disk.Decompress(ctx, image, cp, nil)
	} else {
		err = disk.SparseCopy(cp, image)
	}
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(cp, si.Mode().Perm()); err != nil {
		return nil, fmt.Errorf("copy of %s: %w", image, err)
	}
	if fa == nil {
		if fa, err = prepare(cp); err != nil {
			return nil, err
		}
	}
	d, err := disk.Open(cp, true)
	if err != nil {
		return nil, err
	}
	defer d.Close()

	staging := filepath.Join(work, "staging")
	if err := os.Mkdir(staging, 0o755); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	if err := extractStore(d, fa.data, staging); err != nil {
		return nil, err
	}
	staged, err := tree.Scan(staging)
	if err != nil {
		return nil, err
	}
	var images []enginestore.Image
	for _, s := range sources {
		images = append(images, enginestore.Image{Image: s.img, Tags: s.tags, ManifestDigest: s.manifest(), SourceRepo: s.repo})
	}
	added, err := enginestore.Add(ctx, staged, images, enginestore.WithProgress(o.Progress), enginestore.WithLog(logf))
	if err != nil {
		return nil, fmt.Errorf("preload into %s: %w", image, err)
	}
	stamp := o.Time
	if stamp.IsZero() {
		stamp = newest(sources)
	}
	fixups, err := layOut(staging, fa, appsBytes, stamp)
	if err != nil {
		return nil, err
	}
	full := *added.Staged
	full.Fixups = append(append([]tree.Fixup(nil), added.Staged.Fixups...), fixups...)
	wrote, err := ext4.Add(ctx, cp, fa.data.Start, &full, o.Time)
	grown := false
	for tries := 0; o.Grow && tries < 3; tries++ {
		var short *ext4.ShortError
		if !errors.As(err, &short) {
			break
		}
		need := short.Blocks * short.BlockSize
		if short.Inodes > 0 {
			// Each new block group brings inodes in the filesystem's bytes-per-inode ratio, 8192 on
			// resin-data; a generous one is assumed here and checked by the next Add.
			need += short.Inodes * 16384
		}
		if fa.data, err = grow(ctx, d, fa.data, need, o.Time); err != nil {
			return nil, fmt.Errorf("preload into %s: %w", image, err)
		}
		grown = true
		logf(fmt.Sprintf("grew the data partition to %d MiB", fa.data.Size>>20))
		wrote, err = ext4.Add(ctx, cp, fa.data.Start, &full, o.Time)
	}
	if errors.Is(err, ext4.ErrNoSpace) && !o.Grow {
		return nil, fmt.Errorf("preload into %s: %w (--grow makes room)", image, err)
	}
	if err != nil {
		return nil, fmt.Errorf("preload into %s: %w", image, err)
	}

	res := &Result{Image: image, Output: dest, Platform: platformString(fa.platform), Changed: wrote.Changed() || grown,
		LayerBytes: added.LayerBytes, Warnings: warnings, DataBytes: fa.data.Size}
	if sup != nil {
		res.Supervisor = &Service{Name: "supervisor", Image: sup.tags[1], ImageID: added.Images[len(sources)-1].ID.String(),
			Size: added.Images[len(sources)-1].Size}
	}
	var appsMap map[string]apps.App
	if file != nil {
		appsMap = file.Apps
	}
	for uuid, app := range appsMap {
		res.AppUUID, res.AppName = uuid, app.Name
		for commit, r := range app.Releases {
			res.Commit = commit
			for name, svc := range r.Services {
				res.Services = append(res.Services, Service{Name: name, Image: svc.Image})
			}
		}
	}
	sort.Slice(res.Services, func(i, j int) bool { return res.Services[i].Name < res.Services[j].Name })
	for i, s := range sources {
		if s == sup {
			continue
		}
		w := added.Images[i]
		for j := range res.Services {
			for _, name := range s.services {
				if res.Services[j].Name == name {
					res.Services[j].ImageID, res.Services[j].Size = w.ID.String(), w.Size
				}
			}
		}
	}

	if !res.Changed && output == "" {
		return res, nil
	}
	if err := d.Sync(); err != nil {
		return nil, fmt.Errorf("copy of %s: %w", image, err)
	}
	if err := d.Close(); err != nil {
		return nil, fmt.Errorf("copy of %s: %w", image, err)
	}
	if err := disk.Publish(cp, dest); err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	return res, nil
}

// newest is the latest creation time of the sources' images: the time of the files the preload lays
// out, so that the same inputs give the same bytes.
func newest(sources []*source) time.Time {
	t := time.Unix(0, 0)
	for _, s := range sources {
		if cfg, err := s.img.ConfigFile(); err == nil && cfg.Created.After(t) {
			t = cfg.Created.Time
		}
	}
	return t
}

func (s *source) manifest() v1.Hash {
	if s.digest != (v1.Hash{}) || s.saved {
		// A docker save archive has no manifest of its own: docker load records no digest either.
		return s.digest
	}
	if d, err := s.img.Digest(); err == nil {
		return d
	}
	return v1.Hash{}
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// project parses the compose file, or makes balena's default one for a single image.
func (o Options) project() (*compose.Project, []string, error) {
	switch {
	case o.Compose != nil && o.Image != "":
		return nil, nil, errors.New("preload: a compose file and a single image both given")
	case o.Image != "":
		if len(o.Images) > 0 {
			return nil, nil, errors.New("preload: service images are for a compose file, not with a single image")
		}
		return compose.Default(imageName(o.Image)), nil, nil
	case o.Compose == nil && o.Supervisor != "":
		return nil, nil, nil
	case o.Compose == nil:
		return nil, nil, errors.New("preload: no compose file and no image")
	}
	opts := []compose.Option{compose.WithFilename(o.ComposeFile)}
	if o.ComposeDir != "" {
		opts = append(opts, compose.WithDir(o.ComposeDir))
	}
	if len(o.Images) > 0 {
		// A build-only service is taken when its image is given; one without is refused below.
		opts = append(opts, compose.AllowBuild())
	}
	p, warnings, err := compose.Parse(o.Compose, opts...)
	if err != nil {
		return nil, nil, err
	}
	for name := range o.Images {
		if _, ok := p.Service(name); !ok {
			return nil, nil, fmt.Errorf("preload: an image is given for service %s, which %s does not have", name, o.ComposeFile)
		}
	}
	for _, s := range p.Services {
		if s.Image == "" && o.Images[s.Name] == "" {
			return nil, nil, fmt.Errorf("%s: service %s has only build:; build it first and pass the image with --images %s=REF", o.ComposeFile, s.Name, s.Name)
		}
	}
	return p, warnings, nil
}

// imageName is the name a single image is stored under: the registry reference, or for a local source
// preloaded/main:latest.
func imageName(src string) string {
	if strings.HasPrefix(src, container.PrefixRegistry) {
		return strings.TrimPrefix(src, container.PrefixRegistry)
	}
	return "preloaded/main:latest"
}

// sources groups the services by image source and names each service's image as the engine will store
// it: a tag, or repository@digest for a digest reference.
func (o Options) sources(p *compose.Project) ([]*source, map[string]string, error) {
	by := map[string]*source{}
	var list []*source
	names := map[string]string{}
	for _, s := range p.Services {
		name := s.Image
		src := o.Images[s.Name]
		if o.Image != "" {
			src = o.Image
		}
		if name == "" {
			// A build-only service given an image: stored under a name of its own.
			name = "preloaded/" + strings.ToLower(s.Name) + ":latest"
		}
		if src == "" {
			src = container.PrefixRegistry + name
		}
		ref, err := enginestore.ParseRef(name)
		if err != nil {
			return nil, nil, fmt.Errorf("service %s: image %q: %w", s.Name, name, err)
		}
		sc := by[src]
		if sc == nil {
			sc = &source{ref: src}
			if strings.HasPrefix(src, container.PrefixRegistry) {
				if r, err := enginestore.ParseRef(strings.TrimPrefix(src, container.PrefixRegistry)); err == nil {
					sc.repo = r.Repo
				}
			}
			by[src] = sc
			list = append(list, sc)
		}
		sc.services = append(sc.services, s.Name)
		if ref.Digest != "" {
			h, err := v1.NewHash(ref.Digest)
			if err != nil {
				return nil, nil, fmt.Errorf("service %s: image %q: %w", s.Name, name, err)
			}
			if sc.digest != (v1.Hash{}) && sc.digest != h {
				return nil, nil, fmt.Errorf("service %s: image %q: another digest for the same source", s.Name, name)
			}
			sc.digest = h
			if sc.repo == "" {
				sc.repo = ref.Repo
			}
			names[s.Name] = ref.Repo + "@" + h.String()
			continue
		}
		tag := ref.OrLatest().String()
		if !contains(sc.tags, tag) {
			sc.tags = append(sc.tags, tag)
		}
		names[s.Name] = tag
	}
	return list, names, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func compression(image string) (string, error) {
	if fi, err := os.Stat(image); err == nil && fi.IsDir() {
		return "", fmt.Errorf("image %s: is a directory, not a disk image", image)
	}
	f, err := disk.Open(image, false)
	if err != nil {
		return "", fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	algo, err := disk.Compression(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", image, err)
	}
	return algo, nil
}

// readFacts reads the platform, the data partition and its apps.json from the image file p.
func readFacts(p string) (*facts, error) {
	d, err := disk.Open(p, false)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer d.Close()
	t, err := partition.Read(d, d.Size(), d.SectorSize())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	arch, err := archOf(d, t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	f := &facts{}
	if f.platform, err = container.PlatformOf(arch); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if f.data, err = probe.Locate(d, t, DataLabels...); err != nil {
		return nil, fmt.Errorf("%s: data partition: %w", p, err)
	}
	fsys, err := ext4.Open(d, f.data.Start, f.data.Size)
	if err != nil {
		return nil, fmt.Errorf("%s: data partition %d: %w", p, f.data.Number, err)
	}
	if b, err := fsys.ReadFile(AppsJSON); err == nil {
		f.appsJSON = b
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: data partition %s: %w", p, AppsJSON, err)
	}
	if _, err := fsys.Lstat(ResetMarker); err == nil {
		f.reset = true
	}
	return f, nil
}

// archOf is the balena architecture of the image's device type: device-type.json on the boot
// partition, else the registry's entry for config.json's deviceType.
func archOf(d disk.Disk, t *partition.Table) (string, error) {
	boot, err := bootfs.Locate(d, t)
	if err != nil {
		return "", err
	}
	bfs, err := fat.Open(d, boot.Start, boot.Size)
	if err != nil {
		return "", fmt.Errorf("boot partition %d: %w", boot.Number, err)
	}
	if b, err := bfs.ReadFile("/device-type.json"); err == nil {
		if m, err := config.ParseManifest(b); err == nil && m.Arch != "" {
			return m.Arch, nil
		}
	}
	if b, err := bfs.ReadFile("/config.json"); err == nil {
		if c, err := config.ParseConfig(b); err == nil {
			if slug, _ := c.String("deviceType"); slug != "" {
				dt, err := config.LookupDeviceType(slug)
				if err != nil {
					return "", err
				}
				return dt.Arch, nil
			}
		}
	}
	return "", errors.New("no device type on the boot partition (device-type.json or config.json deviceType)")
}

// storeFiles are the small files of an engine store that Add reads to merge with it.
var layerFiles = []string{"cache-id", "diff", "size", "parent"}

// extractStore copies the small metadata files of the engine store on the data partition into the
// staging directory, so that enginestore.Add merges with the store as it is.
func extractStore(d disk.Disk, data partition.Partition, staging string) error {
	fsys, err := ext4.Open(d, data.Start, data.Size)
	if err != nil {
		return fmt.Errorf("data partition %d: %w", data.Number, err)
	}
	root := "/" + enginestore.DefaultDataRoot
	copyOut := func(p string) (bool, error) {
		b, err := fsys.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("data partition %s: %w", p, err)
		}
		host := filepath.Join(staging, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
			return false, fmt.Errorf("staging: %w", err)
		}
		if err := os.WriteFile(host, b, 0o600); err != nil {
			return false, fmt.Errorf("staging: %w", err)
		}
		return true, nil
	}
	list := func(p string) ([]string, error) {
		names, err := fsys.ReadDir(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("data partition %s: %w", p, err)
		}
		return names, nil
	}
	img := root + "/image/overlay2"
	if _, err := copyOut(img + "/repositories.json"); err != nil {
		return err
	}
	layers, err := list(img + "/layerdb/sha256")
	if err != nil {
		return err
	}
	for _, l := range layers {
		for _, f := range layerFiles {
			if _, err := copyOut(path.Join(img, "layerdb/sha256", l, f)); err != nil {
				return err
			}
		}
		cid, err := os.ReadFile(filepath.Join(staging, filepath.FromSlash(path.Join(img, "layerdb/sha256", l, "cache-id"))))
		if err != nil {
			continue
		}
		c := strings.TrimSpace(string(cid))
		if c == "" || strings.ContainsAny(c, "/\\") || c == "." || c == ".." {
			return fmt.Errorf("data partition: layer %s: bad cache-id %q", l, c)
		}
		for _, f := range []string{"link", "lower", "committed"} {
			if _, err := copyOut(path.Join(root, "overlay2", c, f)); err != nil {
				return err
			}
		}
	}
	for _, dir := range []string{img + "/imagedb/content/sha256", img + "/distribution/v2metadata-by-diffid/sha256"} {
		names, err := list(dir)
		if err != nil {
			return err
		}
		for _, n := range names {
			if _, err := copyOut(dir + "/" + n); err != nil {
				return err
			}
		}
	}
	return nil
}

// layOut stages apps.json, the supervisor's state directory and the reset marker, owned by root.
func layOut(staging string, fa *facts, appsBytes []byte, stamp time.Time) ([]tree.Fixup, error) {
	var fixups []tree.Fixup
	own := func(p string) error {
		if err := os.Chtimes(filepath.Join(staging, filepath.FromSlash(p)), stamp, stamp); err != nil {
			return fmt.Errorf("staging %s: %w", p, err)
		}
		root, err := tree.OwnedByRoot(filepath.Join(staging, filepath.FromSlash(p)))
		if err != nil {
			return fmt.Errorf("staging %s: %w", p, err)
		}
		if !root {
			fixups = append(fixups, tree.Fixup{Op: tree.OpOwner, Path: p})
		}
		return nil
	}
	write := func(p string, b []byte, mode os.FileMode) error {
		host := filepath.Join(staging, filepath.FromSlash(p))
		if err := os.WriteFile(host, b, mode); err != nil {
			return fmt.Errorf("staging %s: %w", p, err)
		}
		if err := os.Chmod(host, mode); err != nil {
			return fmt.Errorf("staging %s: %w", p, err)
		}
		return own(p)
	}
	if appsBytes != nil {
		if err := write(AppsJSON, appsBytes, 0o644); err != nil {
			return nil, err
		}
	}
	if !fa.reset {
		if err := write(ResetMarker, nil, 0o644); err != nil {
			return nil, err
		}
	}
	host := filepath.Join(staging, filepath.FromSlash(StateDir))
	if err := os.Mkdir(host, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("staging %s: %w", StateDir, err)
	}
	if err := os.Chmod(host, 0o755); err != nil {
		return nil, fmt.Errorf("staging %s: %w", StateDir, err)
	}
	if err := own(StateDir); err != nil {
		return nil, err
	}
	return fixups, nil
}
