// Package build assembles a balenaOS-layout disk image from a build spec: spec → layout → disk → filesystems.
package build

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/fat"
	"github.com/hostos/hostos/rootfs/tree"
)

const mib = 1 << 20

// The labels build writes: the layout's own (partition.Role).
var (
	LabelBoot  = partition.Boot.Label()
	LabelRootA = partition.RootA.Label()
	LabelRootB = partition.RootB.Label()
	LabelState = partition.State.Label()
	LabelData  = partition.Data.Label()
)

// ProgressFunc reports progress of a named step in bytes (or units) done of total.
type ProgressFunc func(step string, done, total int64)

// Option configures Build.
type Option func(*options)

type options struct {
	progress ProgressFunc
	log      func(string)
	epoch    *time.Time
}

// WithProgress sets the progress callback.
func WithProgress(p ProgressFunc) Option { return func(o *options) { o.progress = p } }

// WithLog sets the callback for informational messages.
func WithLog(l func(string)) Option { return func(o *options) { o.log = l } }

// WithEpoch makes the build reproducible: timestamps come from t and every identifier is derived from the
// inputs (SOURCE_DATE_EPOCH).
func WithEpoch(t time.Time) Option { return func(o *options) { o.epoch = &t } }

// Result summarises a finished build.
type Result struct {
	Output         string            `json:"output"`
	DeviceType     string            `json:"deviceType"`
	Arch           string            `json:"arch"`
	Version        string            `json:"version"`
	PartitionTable string            `json:"partitionTable"`
	Size           int64             `json:"size"`
	Partitions     []ResultPartition `json:"partitions"`
	RootfsBytes    int64             `json:"rootfsBytes"`
	RootfsEntries  int               `json:"rootfsEntries"`
	BootFiles      []string          `json:"bootFiles"`
	Seconds        float64           `json:"seconds"`
}

// ResultPartition is one partition of a built image.
type ResultPartition struct {
	Number     int    `json:"number"`
	Label      string `json:"label"`
	Filesystem string `json:"filesystem"`
	Start      int64  `json:"start"`
	Size       int64  `json:"size"`
}

// plan is everything decided before a byte is written.
type plan struct {
	spec      *Spec
	dt        config.DeviceType
	table     *partition.Table
	layout    partition.Layout
	root      *tree.Staged // nil for an ext4 image source
	rootfs    *ext4.Root
	bootFiles []fat.File
	version   string
	seed      []byte
	mtime     time.Time
	fsOpts    [5]ext4.Options
	fatOpts   fat.Options
}

// Build assembles the image described by spec at out. Nothing is written at out unless the build
// succeeds: the image is assembled in a temporary file beside it and renamed into place.
func Build(ctx context.Context, spec *Spec, out string, opts ...Option) (*Result, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.progress == nil {
		o.progress = func(string, int64, int64) {}
	}
	if o.log == nil {
		o.log = func(string) {}
	}
	start := time.Now()
	if err := disk.CheckOutput(out, spec.Inputs()...); err != nil {
		return nil, err
	}
	work, release, err := disk.WorkDir(filepath.Dir(out), "."+filepath.Base(out)+".hostos-")
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", out, err)
	}
	defer release()

	p, err := prepare(ctx, spec, work, &o)
	if err != nil {
		return nil, err
	}
	defer p.rootfs.Close()
	tmp := filepath.Join(work, "image")
	if err := p.write(ctx, tmp, &o); err != nil {
		return nil, err
	}
	if err := spec.preloadInto(ctx, tmp, &o); err != nil {
		return nil, err
	}
	if err := disk.Publish(tmp, out); err != nil {
		return nil, fmt.Errorf("output %s: %w", out, err)
	}
	return p.result(out, time.Since(start)), nil
}

// prepare resolves the spec, stages the root filesystem and checks that everything fits.
func prepare(ctx context.Context, spec *Spec, work string, o *options) (*plan, error) {
	p := &plan{spec: spec}
	slug := spec.DeviceType
	if slug == "" {
		slug = "genericx86-64-ext"
	}
	dt, err := config.LookupDeviceType(slug)
	if err != nil {
		return nil, err
	}
	p.dt = dt
	p.mtime = time.Now().UTC().Truncate(time.Second)
	if o.epoch != nil {
		p.mtime = o.epoch.UTC()
	}
	p.version = spec.Version

	// Root filesystem source.
	src := spec.path(spec.Rootfs.Source)
	if src == "" {
		src = filepath.Join(work, "default-root.tar")
		if err := p.writeDefaultRoot(src); err != nil {
			return nil, err
		}
	}
	// The partition sizes, known before staging: an archive far too big for the root partition stops
	// staging early instead of filling the disk.
	sizes := config.Sizes{
		Boot:  firstPositive(spec.Sizes.Boot, dt.Sizes.Boot),
		Root:  firstPositive(spec.Sizes.Root, dt.Sizes.Root),
		State: firstPositive(spec.Sizes.State, dt.Sizes.State),
		Data:  firstPositive(spec.Sizes.Data, dt.Sizes.Data),
	}
	if p.rootfs, err = ext4.OpenRoot(ctx, src, work, int64(sizes.Root)*mib, func(done, total int64) { o.progress("stage root filesystem", done, total) }); err != nil {
		return nil, err
	}
	prepared := false
	defer func() {
		if !prepared {
			p.rootfs.Close()
		}
	}()
	p.root = p.rootfs.Tree

	// Layout.
	kindTable := partition.Kind(firstNonEmpty(spec.PartitionTable, dt.PartitionTable, "msdos"))
	align := int64(firstPositive(spec.AlignmentMiB, dt.AlignmentMiB, 4)) * mib
	bootType := byte(0x0e)
	if dt.BootFAT == 32 {
		bootType = 0x0c
	}
	p.layout = partition.Layout{
		Kind:      kindTable,
		Alignment: align,
		Parts: []partition.PartSpec{
			{Label: LabelBoot, Size: int64(sizes.Boot) * mib, MBRType: bootType, GPTType: espType, Bootable: true},
			{Label: LabelRootA, Size: int64(sizes.Root) * mib, MBRType: 0x83},
			{Label: LabelRootB, Size: int64(sizes.Root) * mib, MBRType: 0x83},
			{Label: LabelState, Size: int64(sizes.State) * mib, MBRType: 0x83},
			{Label: LabelData, Size: int64(sizes.Data) * mib, MBRType: 0x83},
		},
		TotalSize: int64(spec.ImageSizeMiB) * mib,
	}

	// Root filesystem fit, before anything is written.
	if err := p.rootfs.Fit(int64(sizes.Root)*mib, ext4.Options{InodeRatio: rootInodeRatio}, "the root partition"); err != nil {
		return nil, err
	}

	// Seed for every identifier: random, or derived from the inputs when reproducible.
	p.seed = make([]byte, 32)
	if o.epoch != nil {
		h := sha256.New()
		fmt.Fprintf(h, "%+v\n%s\n%d\n", *spec, dt.Slug, p.mtime.Unix())
		if p.root != nil {
			fmt.Fprintf(h, "%d %d\n", p.root.Entries, p.root.Bytes)
		}
		p.seed = h.Sum(nil)
	} else if _, err := rand.Read(p.seed); err != nil {
		return nil, err
	}
	p.layout.Seed = p.seed

	// Boot partition contents.
	if err := p.collectBootFiles(work); err != nil {
		return nil, err
	}
	need, capacity, err := fat.Space(dt.BootFAT, int64(sizes.Boot)*mib, p.bootFiles)
	if err != nil {
		return nil, fmt.Errorf("boot partition: %w", err)
	}
	if need > capacity {
		return nil, fmt.Errorf("boot files overflow the boot partition: they need %d KiB, the %d MiB partition holds %d KiB (short by %d KiB)",
			(need+1023)/1024, sizes.Boot, capacity/1024, (need-capacity+1023)/1024)
	}

	table, err := partition.Plan(p.layout)
	if err != nil {
		return nil, err
	}
	p.table = table

	for i, role := range partition.Roles {
		if role.Filesystem() != "ext4" {
			continue
		}
		label := role.Label()
		fo := ext4.Options{Label: label}
		switch role {
		case partition.RootA, partition.RootB:
			fo.InodeRatio = rootInodeRatio
		case partition.State:
			fo.BlockSize = 4096
		case partition.Data:
			fo.BlockSize, fo.InodeRatio = 4096, 8192
		}
		if o.epoch != nil {
			fo.Time = p.mtime
			fo.UUID = p.derivedUUID("fs-uuid " + label)
			fo.HashSeed = p.derivedUUID("hash-seed " + label)
		}
		p.fsOpts[i] = fo
	}
	p.fatOpts = fat.Options{Bits: dt.BootFAT, Label: LabelBoot, Time: p.mtime}
	if o.epoch != nil {
		p.fatOpts.VolumeID = binary.BigEndian.Uint32(p.derived("fat-volume-id"))
	}
	prepared = true
	return p, nil
}

// rootInodeRatio is the bytes-per-inode of root filesystems, which hold many small files.
const rootInodeRatio = 8192

// write assembles the image file at tmp.
func (p *plan) write(ctx context.Context, tmp string, o *options) error {
	size := p.layout.TotalSize
	if size == 0 {
		size = partition.MinSize(p.layout)
	}
	d, err := disk.Create(tmp, size)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := partition.Write(d, d.Size(), p.table); err != nil {
		d.Close()
		return fmt.Errorf("partition table: %w", err)
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	parts := p.table.Partitions

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
			}
		}()
	}
	// rootA carries the heavy work; the empty filesystems and the boot partition share the other core.
	run(func() error {
		o.progress("write "+LabelRootA, 0, 1)
		var err error
		err = p.rootfs.Write(ctx, tmp, parts[1].Start, parts[1].Size, p.fsOpts[1], LabelRootA)
		if err != nil {
			return fmt.Errorf("%s: %w", LabelRootA, err)
		}
		o.progress("write "+LabelRootA, 1, 1)
		return nil
	})
	run(func() error {
		for i := 2; i < 5; i++ {
			if err := ext4.Make(ctx, tmp, parts[i].Start, parts[i].Size, p.fsOpts[i], nil); err != nil {
				return fmt.Errorf("%s: %w", p.fsOpts[i].Label, err)
			}
		}
		if err := fat.Make(ctx, tmp, parts[0].Start, parts[0].Size, p.fatOpts); err != nil {
			return fmt.Errorf("%s: %w", LabelBoot, err)
		}
		if err := fat.Copy(ctx, tmp, parts[0].Start, p.bootFiles, p.mtime); err != nil {
			return fmt.Errorf("%s: %w", LabelBoot, err)
		}
		fp, err := fingerprint(p.bootFiles)
		if err != nil {
			return err
		}
		// The fingerprint goes in last, over everything else.
		if err := fat.Copy(ctx, tmp, parts[0].Start, []fat.File{{Dst: "/balenaos.fingerprint", Data: fp}}, p.mtime); err != nil {
			return fmt.Errorf("%s: fingerprint: %w", LabelBoot, err)
		}
		return nil
	})
	wg.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	// The staged tree of an archive is not needed any more: its removal (an unlink for each of its
	// entries) runs while the image is synced instead of after.
	removed := make(chan error, 1)
	go func() { removed <- p.rootfs.Close() }()
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if rerr := <-removed; err == nil && rerr != nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return nil
}

// fingerprint computes balenaos.fingerprint over the boot files (config.json excluded).
func fingerprint(files []fat.File) ([]byte, error) {
	var sums []config.FileSum
	for _, f := range files {
		rel := strings.TrimPrefix(f.Dst, "/")
		if rel == "config.json" || rel == "balenaos.fingerprint" {
			continue
		}
		h := md5.New()
		if f.Data != nil || f.Src == "" {
			h.Write(f.Data)
		} else {
			r, err := os.Open(f.Src)
			if err != nil {
				return nil, fmt.Errorf("boot file %s: %w", f.Src, err)
			}
			_, err = io.Copy(h, r)
			r.Close()
			if err != nil {
				return nil, fmt.Errorf("boot file %s: %w", f.Src, err)
			}
		}
		var s config.FileSum
		s.Path = rel
		copy(s.MD5[:], h.Sum(nil))
		sums = append(sums, s)
	}
	return config.Fingerprint(sums), nil
}

// collectBootFiles gathers every file of the boot partition.
func (p *plan) collectBootFiles(work string) error {
	spec, dt := p.spec, p.dt
	// Keyed by the lower-case path: FAT compares names ignoring case, so /Config.JSON is /config.json.
	files := map[string]fat.File{}
	add := func(f fat.File) { files[strings.ToLower(f.Dst)] = f }
	deploy := spec.path(spec.Boot.DeployDir)
	if deploy == "" {
		deploy = spec.Dir
	}
	hf, err := expandBootFiles(spec.Boot.Files, deploy)
	if err != nil {
		return err
	}
	for _, h := range hf {
		for name, why := range generatedBootFiles {
			if under(bootPath(h.Dst), bootPath(name), false) { // compared as the FAT compares names
				return fmt.Errorf("boot file %s: %s is written by build itself (%s)", h.Src, h.Dst, why)
			}
		}
		add(fat.File{Dst: h.Dst, Src: h.Src})
	}

	cfg := config.NewConfig(dt.Slug, spec.Development)
	if spec.Boot.ConfigJSON != "" {
		b, err := disk.ReadInput(spec.path(spec.Boot.ConfigJSON), "config.json", config.MaxConfigBytes)
		if err != nil {
			return err
		}
		over, err := config.ParseConfig(b)
		if err != nil {
			return fmt.Errorf("config.json %s: %w", spec.Boot.ConfigJSON, err)
		}
		for _, k := range over.Keys() {
			v, _ := over.GetPath(k)
			if err := cfg.SetPath(v, k); err != nil {
				return fmt.Errorf("config.json %s: %w", spec.Boot.ConfigJSON, err)
			}
		}
		if err := config.NormalizeChanged(config.NewConfig(dt.Slug, spec.Development), &cfg); err != nil {
			return fmt.Errorf("config.json %s: %w", spec.Boot.ConfigJSON, err)
		}
		if dtv, ok := cfg.String("deviceType"); ok && dtv != dt.Slug {
			return fmt.Errorf("config.json %s: deviceType %q does not match the device type %q", spec.Boot.ConfigJSON, dtv, dt.Slug)
		}
	}
	add(fat.File{Dst: "/config.json", Data: cfg.Encode()})

	manifest, err := dt.Manifest()
	if err != nil {
		return err
	}
	add(fat.File{Dst: "/device-type.json", Data: manifest})

	osr, err := p.osRelease()
	if err != nil {
		return err
	}
	if v := config.ParseOSRelease(osr)["VERSION_ID"]; v != "" && p.version == "" {
		p.version = v
	}
	add(fat.File{Dst: "/os-release", Data: osr})
	// The rest of balenaOS's default layout: flag file, image name, samples in system-connections/ and
	// system-proxy/ (balena-device-init's Wi-Fi configure needs system-connections/ to exist),
	// extra_uEnv.txt on U-Boot boards. The spec's files may replace them.
	for _, f := range config.DefaultBootFiles(dt, p.version) {
		if _, ok := files[strings.ToLower(f.Path)]; !ok {
			add(fat.File{Dst: f.Path, Data: f.Data})
		}
	}

	if spec.Boot.Splash != "" {
		src := spec.path(spec.Boot.Splash)
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("splash: %w", err)
		}
		if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			return fmt.Errorf("splash %s: not a PNG file", spec.Boot.Splash)
		}
		if _, ok := files["/splash/balena-logo.png"]; ok {
			return fmt.Errorf("splash %s: the boot files already hold /splash/balena-logo.png; give the splash once", spec.Boot.Splash)
		}
		add(fat.File{Dst: "/splash/balena-logo.png", Src: src})
	}
	for _, c := range spec.Boot.SystemConnections {
		src := spec.path(c)
		b, err := disk.ReadInput(src, "system connection", config.MaxKeyfileBytes)
		if err != nil {
			return err
		}
		// Checked exactly as configure checks --system-connection, and the checked bytes are what is written.
		name := filepath.Base(src)
		if err := config.ValidateConnectionFile(name, b); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
		add(fat.File{Dst: path.Join("/system-connections", name), Data: b})
	}
	switch dt.Bootloader {
	case "grub", "grub-efi":
		env, err := bootenv.EncodeGrubEnv(map[string]string{"bootcount": "0", "resin_root_part": "2", "upgrade_available": "0"})
		if err != nil {
			return err
		}
		add(fat.File{Dst: "/grub/grubenv", Data: env})
		add(fat.File{Dst: "/EFI/BOOT/grubenv", Data: env})
	case "balena-bootloader":
		env, err := bootenv.EncodeGrubEnv(map[string]string{"resin_root_part": "A"})
		if err != nil {
			return err
		}
		add(fat.File{Dst: "/bootenv", Data: env})
	}
	p.bootFiles = p.bootFiles[:0]
	for _, f := range files {
		p.bootFiles = append(p.bootFiles, f)
	}
	sort.Slice(p.bootFiles, func(i, j int) bool { return p.bootFiles[i].Dst < p.bootFiles[j].Dst })
	return nil
}

// generatedBootFiles are the boot partition files build writes itself, with where their
// content comes from; a boot file list entry naming one would be dropped silently, so it is refused.
var generatedBootFiles = map[string]string{
	"/config.json":          "give it as boot.config_json",
	"/device-type.json":     "from the device type",
	"/os-release":           "give it as boot.os_release",
	"/balenaos.fingerprint": "computed over the other files",
	"/grub/grubenv":         "the bootloader environment",
	"/efi/boot/grubenv":     "the bootloader environment",
	"/bootenv":              "the bootloader environment",
}

// osRelease returns the os-release for the boot partition: the spec's, the root filesystem's, or generated.
func (p *plan) osRelease() ([]byte, error) {
	if p.spec.Boot.OSRelease != "" {
		b, err := os.ReadFile(p.spec.path(p.spec.Boot.OSRelease))
		if err != nil {
			return nil, fmt.Errorf("os-release: %w", err)
		}
		return b, nil
	}
	if p.root != nil {
		if b, err := readInTree(p.root.Dir, "etc/os-release"); err == nil {
			return b, nil
		}
		if b, err := readInTree(p.root.Dir, "usr/lib/os-release"); err == nil {
			return b, nil
		}
	}
	return p.generatedOSRelease()
}

func (p *plan) generatedOSRelease() ([]byte, error) {
	v := p.version
	if v == "" {
		v = "0.0.0"
	}
	return config.OSRelease(config.Release{Version: v, Machine: p.dt.Machine, Slug: p.dt.Slug, Development: p.spec.Development}.Fields()...)
}

func (p *plan) writeDefaultRoot(dst string) error {
	if p.version == "" {
		p.version = "0.1.0"
	}
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("default root filesystem: %w", err)
	}
	osr, err := p.generatedOSRelease()
	if err != nil {
		f.Close()
		return err
	}
	if err := writeDefaultRoot(f, osr, p.mtime); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (p *plan) derived(what string) []byte {
	h := sha256.New()
	h.Write(p.seed)
	h.Write([]byte(what))
	return h.Sum(nil)
}

func (p *plan) derivedUUID(what string) uuid.UUID {
	var u uuid.UUID
	copy(u[:], p.derived(what))
	u[6] = (u[6] & 0x0f) | 0x40
	u[8] = (u[8] & 0x3f) | 0x80
	return u
}

func (p *plan) result(out string, took time.Duration) *Result {
	r := &Result{
		Output: out, DeviceType: p.dt.Slug, Arch: p.dt.Arch, Version: p.version,
		PartitionTable: string(p.table.Kind), Seconds: took.Seconds(),
	}
	if fi, err := os.Stat(out); err == nil {
		r.Size = fi.Size()
	}
	for i, part := range p.table.Partitions {
		fs := "ext4"
		if i == 0 {
			fs = "vfat"
		}
		r.Partitions = append(r.Partitions, ResultPartition{Number: part.Number, Label: part.Label, Filesystem: fs, Start: part.Start, Size: part.Size})
	}
	if p.root != nil {
		r.RootfsBytes, r.RootfsEntries = p.root.Bytes, p.root.Entries
	}
	for _, f := range p.bootFiles {
		r.BootFiles = append(r.BootFiles, f.Dst)
	}
	r.BootFiles = append(r.BootFiles, "/balenaos.fingerprint")
	return r
}

// readInTree reads rel inside root, resolving symlinks relative to root so nothing escapes it.
func readInTree(root, rel string) ([]byte, error) {
	p := rel
	for i := 0; i < 16; i++ {
		full := filepath.Join(root, p)
		fi, err := os.Lstat(full)
		if err != nil {
			return nil, err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return os.ReadFile(full)
		}
		target, err := os.Readlink(full)
		if err != nil {
			return nil, err
		}
		if path.IsAbs(target) {
			p = path.Clean(target)[1:]
		} else {
			p = path.Join(path.Dir(p), target)
		}
		if strings.HasPrefix(p, "..") {
			return nil, fmt.Errorf("%s: symlink escapes the root", rel)
		}
	}
	return nil, fmt.Errorf("%s: too many symlinks", rel)
}

var espType = uuid.MustParse("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")

func ceilMiB(n int64) int64 { return (n + mib - 1) / mib }

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func firstPositive(n ...int) int {
	for _, v := range n {
		if v > 0 {
			return v
		}
	}
	return 0
}
