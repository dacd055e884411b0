package update

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/build"
	"github.com/hostos/hostos/hostapp/update/source"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/bootfs"
)

// Options are the knobs of an update.
type Options struct {
	// Force installs even when an update is already pending.
	Force bool
	// TempDir holds the new boot files and the backup of the old ones while they are swapped.
	TempDir string
	// Time stamps boot files written (zero: now).
	Time     time.Time
	Progress func(step string, done, total int64)
	Log      func(string)
}

// Result says what an update did.
type Result struct {
	From     bootenv.Slot `json:"from"`
	To       bootenv.Slot `json:"to"`
	Version  string       `json:"version,omitempty"`
	Bytes    int64        `json:"bytes"`
	Boot     []string     `json:"bootFiles"`
	Switched bool         `json:"switched"`
}

// checkBootName refuses a boot file of the new OS that would replace one the device owns (config.json,
// the fingerprint, extra_uEnv.txt, splash/, system-connections/, system-proxy/) or the environment files
// of backend env, compared as the FAT compares names (build.CheckBootDst, the one list for builds and
// updates alike).
func checkBootName(name string, env bootenv.Backend) error {
	return build.CheckBootDst(name, env.Files())
}

// Update writes p into the slot that is not running, installs its boot files and switches the bootloader
// to it on trial. Until the switch, a failure leaves the device as it was; a failure after the boot files
// were touched restores them and points the bootloader back at the running slot. Result.Switched says
// whether the device will boot the new system.
func (tg *Target) Update(ctx context.Context, p *source.Payload, o Options) (res Result, err error) {
	logf := func(format string, a ...any) {
		if o.Log != nil {
			o.Log(fmt.Sprintf(format, a...))
		}
	}
	st, err := tg.Read()
	if err != nil {
		return res, err
	}
	if st.Pending() && !o.Force {
		return res, fmt.Errorf("%w (slot %s on trial): commit or roll back first, or --force", ErrPending, st.Env.Root)
	}
	from := tg.Booted
	to := from.Other()
	res = Result{From: from, To: to, Version: p.Version}
	if p.DeviceType != "" && tg.DeviceType != "" && p.DeviceType != tg.DeviceType {
		return res, fmt.Errorf("update is for device type %s, this is %s", p.DeviceType, tg.DeviceType)
	}
	if p.Arch != "" && tg.Arch != "" && p.Arch != tg.Arch {
		return res, fmt.Errorf("update is for %s, this device is %s", p.Arch, tg.Arch)
	}
	slot := tg.Slots[to]
	if p.Size > slot.Size {
		return res, fmt.Errorf("%d MiB filesystem, slot %s holds %d MiB: %w", (p.Size+(1<<20)-1)>>20, to, slot.Size>>20, ErrNoSpace)
	}
	progress := func(step string) func(done, total int64) {
		if o.Progress == nil {
			return nil
		}
		return func(done, total int64) { o.Progress(step, done, total) }
	}
	logf("writing %s into slot %s (partition %d)", p.Version, to, slot.Number)
	if err := writeSlot(ctx, tg.Disk, slot, p.Image, p.Size,
		Digest{SHA256: p.ImageSHA256, ChunkSize: p.ImageChunkSize, ChunksSHA256: p.ImageChunksSHA256}, tg.Labels[to], tg.chunk, progress("write slot "+string(to))); err != nil {
		return res, fmt.Errorf("slot %s: %w (nothing switched: slot %s still boots)", to, err, from)
	}
	res.Bytes = p.Size
	// A verified image is not yet an operating system: an empty or unrelated filesystem would be booted
	// and only the boot counter would bring the device back. Every OS names itself in os-release.
	if tg.SlotVersion(to) == "" {
		return res, fmt.Errorf("slot %s: the new root filesystem has no /etc/os-release naming a version: not an operating system (nothing switched: slot %s still boots)", to, from)
	}

	tmp, release, err := disk.WorkDir(o.TempDir, "hostos-update-")
	if err != nil {
		return res, fmt.Errorf("update: %w (nothing switched)", err)
	}
	defer release()
	staged, err := stageBoot(p, filepath.Join(tmp, "new"), tg.Env)
	if err != nil {
		return res, fmt.Errorf("boot files: %w (nothing switched: slot %s still boots)", err, from)
	}
	mtime := o.Time
	if mtime.IsZero() {
		mtime = time.Now()
	}
	tg.removeFsckLeftovers(logf)
	plan, err := tg.planBoot(staged)
	if err != nil {
		return res, fmt.Errorf("boot files: %w (nothing switched: slot %s still boots)", err, from)
	}
	backup := filepath.Join(tmp, "old")
	restore := func(cause error) error {
		rerr := tg.restoreBoot(plan, backup, mtime)
		if rerr == nil {
			rerr = tg.Env.Write(tg.Boot, st.Env)
		}
		if rerr != nil {
			return fmt.Errorf("%w; restoring the boot partition failed too: %v", cause, rerr)
		}
		return fmt.Errorf("%w (restored: slot %s still boots)", cause, from)
	}
	// What a rollback to this slot will need, kept in the state partition: the boot files about to be
	// replaced and the names of those about to be added. Without room for it, rollbacks only switch the
	// bootloader, as they did before hostos kept it.
	if err := tg.saveBackup(plan, from); err != nil {
		logf("the boot files of slot %s were not kept for a rollback: %v", from, err)
		_ = tg.State.Remove(BootBackup)
	}
	if err := tg.installBoot(plan, backup, mtime); err != nil {
		return res, restore(fmt.Errorf("boot files: %w", err))
	}
	res.Boot = plan.names()
	// The breadcrumbs first: without the switch they mean nothing. The bootloader write is the one
	// step that decides which system boots next.
	step := Install(st, to)
	if err := tg.crumbs(step); err != nil {
		return res, restore(fmt.Errorf("breadcrumbs: %w", err))
	}
	if err := tg.Env.Write(tg.Boot, step.Env); err != nil {
		return res, restore(fmt.Errorf("bootloader environment: %w", err))
	}
	res.Switched = true
	// The fingerprint describes the boot partition as the update leaves it, env files included, as
	// meta-balena's does (a later boot count changes them, as on balena's own images). It is a
	// description, not a switch: failing to refresh it does not undo the update.
	if len(plan.files) > 0 {
		if err := tg.refreshFingerprint(mtime); err != nil {
			logf("slot %s boots next, but balenaos.fingerprint was not refreshed: %v", to, err)
		}
	}
	if err := tg.Disk.Sync(); err != nil {
		return res, fmt.Errorf("switched to slot %s, but the final sync failed: %w", to, err)
	}
	logf("slot %s boots next, on trial", to)
	return res, nil
}

// fsckLeftover names the files fsck.vfat saves lost clusters in: garbage that fills a small boot partition
// (a failure balena users hit mid-update).
var fsckLeftover = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)^FSCK[0-9]{4}\.REC$`) })

// removeFsckLeftovers deletes fsck's FSCKnnnn.REC files from the boot partition root. A failure is only
// logged: the space check that follows decides whether the update fits.
func (tg *Target) removeFsckLeftovers(logf func(string, ...any)) {
	names, err := bootfs.List(tg.Boot)
	if err != nil {
		return
	}
	for _, n := range names {
		if fsckLeftover().MatchString(n) {
			if err := tg.Boot.Remove("/" + n); err != nil {
				logf("could not remove %s from the boot partition: %v", n, err)
			} else {
				logf("removed fsck leftover %s from the boot partition", n)
			}
		}
	}
}

// stageBoot copies the payload's boot files into dir; they count only once Boot has verified them. A boot
// file the device owns (checkBootName) fails the whole update before the boot partition is touched.
func stageBoot(p *source.Payload, dir string, env bootenv.Backend) (map[string]string, error) {
	files := map[string]string{}
	if p.Boot == nil {
		return files, nil
	}
	err := p.Boot(func(name string, size int64, r io.Reader) error {
		if err := checkBootName(name, env); err != nil {
			return err // the bundle reader names the file
		}
		name = path.Clean("/" + name)
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.Create(dst)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		files[name] = dst
		return err
	})
	return files, err
}

// bootPlan is the boot files an update changes.
type bootPlan struct {
	files []bootFile
}

type bootFile struct {
	name    string // "/path"
	src     string // staged new content
	size    int64
	oldSize int64 // -1: new file
}

func (b bootPlan) names() []string {
	ns := make([]string, len(b.files))
	for i, f := range b.files {
		ns[i] = strings.TrimPrefix(f.name, "/")
	}
	return ns
}

// planBoot keeps the staged files that differ from the boot partition's and are not the device's own,
// and checks that they fit.
func (tg *Target) planBoot(staged map[string]string) (bootPlan, error) {
	var plan bootPlan
	names := make([]string, 0, len(staged))
	for n := range staged {
		names = append(names, n)
	}
	slices.Sort(names)
	var changes []bootfs.Change
	dirs := map[string]bool{}
	for _, n := range names {
		if err := checkBootName(n, tg.Env); err != nil {
			return plan, fmt.Errorf("boot file %s: %w", n, err)
		}
		data, err := os.ReadFile(staged[n])
		if err != nil {
			return plan, err
		}
		old, err := tg.Boot.ReadFile(n)
		switch {
		case err == nil && bytes.Equal(old, data):
			continue
		case err == nil:
			plan.files = append(plan.files, bootFile{n, staged[n], int64(len(data)), int64(len(old))})
		case errors.Is(err, fs.ErrNotExist):
			plan.files = append(plan.files, bootFile{n, staged[n], int64(len(data)), -1})
		default:
			return plan, err
		}
		f := plan.files[len(plan.files)-1]
		c := bootfs.Change{Name: n, Size: f.size, OldSize: f.oldSize}
		if d := path.Dir(n); f.oldSize < 0 && d != "/" && !dirs[d] {
			if _, err := tg.Boot.ModTime(d); err != nil {
				c.NewDir, dirs[d] = true, true
			}
		}
		changes = append(changes, c)
	}
	// Room for the refreshed fingerprint too.
	changes = append(changes, bootfs.Change{Name: config.FingerprintName, Size: 64 << 10, OldSize: 0})
	return plan, bootfs.Fits(tg.Boot, changes)
}

// installBoot backs up each file it replaces into backup and writes the new ones.
func (tg *Target) installBoot(plan bootPlan, backup string, mtime time.Time) error {
	for _, f := range plan.files {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return err
		}
		if f.oldSize >= 0 {
			old, err := tg.Boot.ReadFile(f.name)
			if err != nil {
				return err
			}
			dst := filepath.Join(backup, filepath.FromSlash(f.name))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(dst, old, 0o644); err != nil {
				return err
			}
		}
		if d := path.Dir(f.name); d != "/" {
			if err := tg.Boot.MkdirAll(d, mtime); err != nil {
				return err
			}
		}
		if err := tg.Boot.WriteFile(f.name, data, mtime); err != nil {
			return err
		}
	}
	return nil
}

// restoreBoot puts back the files installBoot replaced. Files it added stay: the old system ignores them.
func (tg *Target) restoreBoot(plan bootPlan, backup string, mtime time.Time) error {
	for _, f := range plan.files {
		if f.oldSize < 0 {
			continue
		}
		data, err := os.ReadFile(filepath.Join(backup, filepath.FromSlash(f.name)))
		if errors.Is(err, fs.ErrNotExist) {
			continue // not replaced yet
		}
		if err != nil {
			return err
		}
		if cur, err := tg.Boot.ReadFile(f.name); err == nil && bytes.Equal(cur, data) {
			continue
		}
		if err := tg.Boot.WriteFile(f.name, data, mtime); err != nil {
			return err
		}
	}
	if len(plan.files) == 0 {
		return nil
	}
	return tg.refreshFingerprint(mtime)
}

// refreshFingerprint rewrites balenaos.fingerprint for the boot partition's files as they are now.
func (tg *Target) refreshFingerprint(mtime time.Time) error {
	names, err := bootfs.List(tg.Boot)
	if err != nil {
		return err
	}
	var sums []config.FileSum
	for _, n := range names {
		b, err := tg.Boot.ReadFile("/" + n)
		if err != nil {
			return err
		}
		sums = append(sums, config.FileSum{Path: n, MD5: md5.Sum(b)})
	}
	fp := config.Fingerprint(sums)
	if cur, err := tg.Boot.ReadFile("/" + config.FingerprintName); err == nil && bytes.Equal(cur, fp) {
		return nil
	}
	return tg.Boot.WriteFile("/"+config.FingerprintName, fp, mtime)
}

// BootBackup is the file in the state partition root that holds the boot files an update replaced, for a
// rollback to put back: a tar of backupManifest (manifest.json) and the old files under files/.
const BootBackup = "hostos-rollback-bootfiles.tar"

// backupManifest says which system the backed-up boot files belong to and which files the update added.
type backupManifest struct {
	Slot    bootenv.Slot `json:"slot"`
	Version string       `json:"version"`
	Added   []string     `json:"added"`
}

// saveBackup writes BootBackup for the files plan replaces and adds, which belong to the system in slot.
func (tg *Target) saveBackup(plan bootPlan, slot bootenv.Slot) error {
	m := backupManifest{Slot: slot, Version: tg.SlotVersion(slot), Added: []string{}}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, f := range plan.files {
		if f.oldSize < 0 {
			m.Added = append(m.Added, f.name)
		}
	}
	mj, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := add("manifest.json", mj); err != nil {
		return err
	}
	for _, f := range plan.files {
		if f.oldSize < 0 {
			continue
		}
		old, err := tg.Boot.ReadFile(f.name)
		if err != nil {
			return err
		}
		if err := add("files"+f.name, old); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return tg.State.Put(BootBackup, buf.Bytes())
}

// restoreBackup puts back the boot files BootBackup holds when they belong to the system slot holds now
// (same slot, same version), deletes the files that update added, and refreshes the fingerprint. ok is
// false when there is no such backup: the boot partition is left as it is.
func (tg *Target) restoreBackup(slot bootenv.Slot, mtime time.Time) (ok bool, err error) {
	data, err := tg.State.Get(BootBackup)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var m *backupManifest
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return false, fmt.Errorf("%s: %w", BootBackup, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return false, fmt.Errorf("%s: %w", BootBackup, err)
		}
		switch {
		case h.Name == "manifest.json":
			m = &backupManifest{}
			if err := json.Unmarshal(b, m); err != nil {
				return false, fmt.Errorf("%s: manifest: %w", BootBackup, err)
			}
		case strings.HasPrefix(h.Name, "files/"):
			files[path.Clean("/"+strings.TrimPrefix(h.Name, "files/"))] = b
		}
	}
	if m == nil {
		return false, fmt.Errorf("%s: no manifest", BootBackup)
	}
	if m.Slot != slot || m.Version != tg.SlotVersion(slot) {
		return false, nil // the boot files of another system
	}
	names := slices.Sorted(maps.Keys(files))
	for _, n := range names {
		if err := checkBootName(n, tg.Env); err != nil {
			return false, fmt.Errorf("%s: %w", BootBackup, err)
		}
		if cur, err := tg.Boot.ReadFile(n); err == nil && bytes.Equal(cur, files[n]) {
			continue
		}
		if d := path.Dir(n); d != "/" {
			if err := tg.Boot.MkdirAll(d, mtime); err != nil {
				return false, err
			}
		}
		if err := tg.Boot.WriteFile(n, files[n], mtime); err != nil {
			return false, err
		}
	}
	for _, n := range m.Added {
		n = path.Clean("/" + n)
		if err := checkBootName(n, tg.Env); err != nil {
			return false, fmt.Errorf("%s: %w", BootBackup, err)
		}
		if err := tg.Boot.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
	}
	return true, tg.refreshFingerprint(mtime)
}
