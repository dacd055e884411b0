//go:build linux

// Command genrootfs writes a deterministic stand-in for a Linux root filesystem
// (and optionally a boot deploy directory) for benchmarks and tests.
//
// The same seed always gives the same tree: names, sizes, contents, modes,
// symlinks, hard links and mtimes.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// mtime is the fixed modification time of every entry.
var mtime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "genrootfs:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("genrootfs", flag.ContinueOnError)
	out := fl.String("o", "", "root directory to create (must not exist or be empty)")
	deploy := fl.String("deploy", "", "also create a boot deploy directory here (bzImage, grub.cfg)")
	seed := fl.Uint64("seed", 1, "random seed")
	sizeMB := fl.Int64("size-mb", 300, "approximate total file bytes, in MB (10^6)")
	entries := fl.Int("entries", 10000, "approximate number of entries")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-o is required")
	}
	if *sizeMB <= 0 || *entries < 100 {
		return errors.New("-size-mb must be positive and -entries at least 100")
	}
	g := &gen{rng: rand.New(rand.NewPCG(*seed, 0x686f73746f73)), root: *out}
	if err := emptyDir(*out); err != nil {
		return err
	}
	st, err := g.tree(*sizeMB*1e6, *entries)
	if err != nil {
		return err
	}
	fmt.Printf("rootfs %s: %d entries (%d dirs, %d files, %d symlinks, %d hard links), %d bytes\n",
		*out, st.dirs+st.files+st.symlinks+st.hardlinks, st.dirs, st.files, st.symlinks, st.hardlinks, st.bytes)
	if *deploy != "" {
		if err := emptyDir(*deploy); err != nil {
			return err
		}
		d := &gen{rng: rand.New(rand.NewPCG(*seed, 0x626f6f74)), root: *deploy}
		if err := d.deployDir(); err != nil {
			return err
		}
		fmt.Printf("deploy %s: bzImage, grub.cfg\n", *deploy)
	}
	return nil
}

// emptyDir creates dir, or accepts it when it exists and is empty.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dir, 0o755)
	case err != nil:
		return fmt.Errorf("output directory: %w", err)
	case len(ents) > 0:
		return fmt.Errorf("output directory %s: not empty", dir)
	}
	return nil
}

type gen struct {
	rng   *rand.Rand
	root  string
	dirs  []string // relative paths, in creation order
	files []string // regular files, relative
	st    stats
}

type stats struct {
	dirs, files, symlinks, hardlinks int
	bytes                            int64
}

// words make text files look like text (and compress like text).
var words = strings.Fields(`the of and to in is for on with as by this that from be are or an it
at not config default option value path service unit system user network device kernel module
library version license copyright description install package file directory enable disable
start stop true false none auto root boot data state update image partition filesystem mount`)

var pkgNames = strings.Fields(`acl attr bash coreutils curl dbus e2fsprogs expat glib2 gnutls
iptables kmod libcap libffi libgcrypt libseccomp libxml2 lz4 ncurses nettle networkmanager
openssh openssl pam pcre2 python3 readline sqlite systemd tar util-linux xz zlib zstd
avahi balena-engine chrony dnsmasq iproute2 jq lvm2 mdadm ostree parted plymouth procps
rsync shadow sudo tzdata udev wireless-tools wpa-supplicant`)

func (g *gen) pick(list []string) string { return list[g.rng.IntN(len(list))] }

func (g *gen) mkdir(rel string) error {
	if err := os.MkdirAll(filepath.Join(g.root, rel), 0o755); err != nil {
		return err
	}
	for p := rel; p != "." && p != "/" && p != ""; p = filepath.Dir(p) {
		if !contains(g.dirs, p) {
			g.dirs = append(g.dirs, p)
			g.st.dirs++
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// content returns n bytes: text for text files, and for binaries a mix of
// random runs, repeated runs and zero runs, which compresses like real code.
func (g *gen) content(n int64, text bool) []byte {
	b := make([]byte, 0, n)
	if text {
		for int64(len(b)) < n {
			w := g.pick(words)
			if g.rng.IntN(12) == 0 {
				b = append(b, '\n')
			} else {
				b = append(b, ' ')
			}
			b = append(b, w...)
		}
		return b[:n]
	}
	for int64(len(b)) < n {
		run := min(int64(256+g.rng.IntN(8192)), n-int64(len(b)))
		switch k := g.rng.IntN(10); {
		case k < 6:
			for i := int64(0); i < run; i += 8 {
				v := g.rng.Uint64()
				for j := int64(0); j < 8 && i+j < run; j++ {
					b = append(b, byte(v>>(8*j)))
				}
			}
		case k < 9:
			pat := []byte(g.pick(words) + "\x00" + g.pick(pkgNames) + "\x00")
			for i := int64(0); i < run; i++ {
				b = append(b, pat[i%int64(len(pat))])
			}
		default:
			b = append(b, make([]byte, run)...)
		}
	}
	return b
}

func (g *gen) file(rel string, n int64, text bool, mode os.FileMode) error {
	if err := os.WriteFile(filepath.Join(g.root, rel), g.content(n, text), mode); err != nil {
		return err
	}
	g.files = append(g.files, rel)
	g.st.files++
	g.st.bytes += n
	return nil
}

func (g *gen) symlink(target, rel string) error {
	if err := os.Symlink(target, filepath.Join(g.root, rel)); err != nil {
		return err
	}
	g.st.symlinks++
	return nil
}

// size draws a file size: mostly small files, some medium, few large.
func (g *gen) size() int64 {
	switch k := g.rng.IntN(100); {
	case k < 70:
		return 100 + g.rng.Int64N(16<<10)
	case k < 97:
		return 16<<10 + g.rng.Int64N(240<<10)
	default:
		return 1<<20 + g.rng.Int64N(3<<20)
	}
}

func (g *gen) tree(budget int64, entries int) (stats, error) {
	// The usual top level, merged-/usr style.
	for _, d := range []string{"boot", "dev", "etc/systemd/system/multi-user.target.wants",
		"etc/NetworkManager/system-connections", "etc/ssl/certs", "home/root", "mnt", "opt", "proc",
		"root", "run", "srv", "sys", "tmp", "usr/bin", "usr/sbin", "usr/include", "usr/libexec",
		"usr/lib/x86_64-linux-gnu", "usr/lib/modules/6.6.0/kernel/drivers", "usr/lib/firmware",
		"usr/lib/systemd/system", "usr/share/man/man1", "usr/share/zoneinfo", "var/lib", "var/log",
		"var/cache", "mnt/boot", "mnt/state", "mnt/data"} {
		if err := g.mkdir(d); err != nil {
			return g.st, err
		}
	}
	for _, l := range [][2]string{{"usr/bin", "bin"}, {"usr/sbin", "sbin"}, {"usr/lib", "lib"},
		{"usr/lib", "lib64"}, {"../run", "var/run"}} {
		if err := g.symlink(l[0], l[1]); err != nil {
			return g.st, err
		}
	}
	if err := os.Chmod(filepath.Join(g.root, "tmp"), os.ModeSticky|0o777); err != nil {
		return g.st, err
	}
	// Places where files go, with a weight, whether they are text, and their mode.
	type area struct {
		dir    func() string
		weight int
		text   bool
		mode   os.FileMode
		ext    string
	}
	pkgDir := func(base string) func() string {
		return func() string { return base + "/" + g.pick(pkgNames) }
	}
	areas := []area{
		{func() string { return "usr/bin" }, 8, false, 0o755, ""},
		{func() string { return "usr/sbin" }, 3, false, 0o755, ""},
		{func() string { return "usr/lib/x86_64-linux-gnu" }, 12, false, 0o644, ".so"},
		{pkgDir("usr/lib/python3/dist-packages"), 14, true, 0o644, ".py"},
		{func() string {
			return fmt.Sprintf("usr/lib/modules/6.6.0/kernel/drivers/%s/%s", g.pick(pkgNames), g.pick(words))
		}, 12, false, 0o644, ".ko"},
		{pkgDir("usr/share/doc"), 10, true, 0o644, ""},
		{func() string { return "usr/share/locale/" + g.pick(words)[:2] + "/LC_MESSAGES" }, 6, false, 0o644, ".mo"},
		{pkgDir("usr/include"), 8, true, 0o644, ".h"},
		{func() string { return "usr/share/man/man1" }, 5, true, 0o644, ".1"},
		{pkgDir("etc"), 6, true, 0o644, ".conf"},
		{func() string { return "usr/lib/systemd/system" }, 4, true, 0o644, ".service"},
		{pkgDir("usr/lib/firmware"), 3, false, 0o644, ".bin"},
		{pkgDir("usr/share/zoneinfo"), 3, false, 0o644, ""},
		{pkgDir("var/lib"), 2, false, 0o644, ".db"},
	}
	total := 0
	for _, a := range areas {
		total += a.weight
	}
	nFiles := entries * 85 / 100
	var sizes []int64
	var sum int64
	for range nFiles {
		s := g.size()
		sizes = append(sizes, s)
		sum += s
	}
	// Scale to the byte budget while keeping sizes within 100 B .. 6 MB.
	for i := range sizes {
		sizes[i] = min(max(sizes[i]*budget/sum, 100), 6<<20)
	}
	used := map[string]bool{}
	for i, sz := range sizes {
		w := g.rng.IntN(total)
		var a area
		for _, a = range areas {
			if w < a.weight {
				break
			}
			w -= a.weight
		}
		dir := a.dir()
		if err := g.mkdir(dir); err != nil {
			return g.st, err
		}
		name := fmt.Sprintf("%s/%s-%s%d%s", dir, g.pick(words), g.pick(pkgNames), i, a.ext)
		if used[name] {
			continue
		}
		used[name] = true
		if err := g.file(name, sz, a.text, a.mode); err != nil {
			return g.st, err
		}
		// Shared libraries get the usual soname symlinks.
		if a.ext == ".so" && g.rng.IntN(2) == 0 {
			if err := g.symlink(filepath.Base(name), name+".1"); err != nil {
				return g.st, err
			}
		}
	}
	// Symlinks between files, relative like a distribution makes them.
	for i := 0; g.st.dirs+g.st.files+g.st.symlinks < entries*97/100; i++ {
		target := g.pick(g.files)
		link := filepath.Join(filepath.Dir(g.pick(g.files)), fmt.Sprintf("alt-%d-%s", i, filepath.Base(target)))
		rel, err := filepath.Rel(filepath.Dir(link), target)
		if err != nil {
			return g.st, err
		}
		if err := g.symlink(rel, link); err != nil {
			return g.st, err
		}
	}
	// A few hard links, as busybox-style multi-call binaries have.
	bins := []string{}
	for _, f := range g.files {
		if strings.HasPrefix(f, "usr/bin/") {
			bins = append(bins, f)
		}
	}
	for i := 0; i < 12 && len(bins) > 0; i++ {
		src := g.pick(bins)
		if err := os.Link(filepath.Join(g.root, src), filepath.Join(g.root, fmt.Sprintf("usr/sbin/hl%d-%s", i, filepath.Base(src)))); err != nil {
			return g.st, err
		}
		g.st.hardlinks++
	}
	for _, f := range []struct{ name, text string }{
		{"etc/os-release", "ID=balena-os\nNAME=\"balenaOS\"\nVERSION_ID=6.0.0\n"},
		{"etc/hostname", "balena\n"},
		{"etc/fstab", "/dev/root / auto defaults,ro 0 0\n"},
		{"etc/passwd", "root:x:0:0:root:/home/root:/bin/sh\n"},
	} {
		if err := os.WriteFile(filepath.Join(g.root, f.name), []byte(f.text), 0o644); err != nil {
			return g.st, err
		}
		g.st.files++
		g.st.bytes += int64(len(f.text))
	}
	return g.st, g.fixTimes()
}

func (g *gen) deployDir() error {
	if err := g.mkdir("."); err != nil {
		return err
	}
	if err := g.file("bzImage", 9<<20+12345, false, 0o644); err != nil {
		return err
	}
	cfg := "set default=0\nset timeout=3\nmenuentry 'balenaOS' {\n\tlinux /bzImage root=LABEL=resin-rootA rootwait\n}\n"
	if err := os.WriteFile(filepath.Join(g.root, "grub.cfg"), []byte(cfg), 0o644); err != nil {
		return err
	}
	return g.fixTimes()
}

// fixTimes sets every entry's access and modification time to mtime,
// deepest first so that directories keep theirs.
func (g *gen) fixTimes() error {
	var paths []string
	err := filepath.WalkDir(g.root, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	if err != nil {
		return err
	}
	sort.Slice(paths, func(i, j int) bool { return paths[i] > paths[j] })
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	for _, p := range paths {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set times of %s: %w", p, err)
		}
	}
	return nil
}
