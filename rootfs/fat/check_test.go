package fat

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// crossFixture is a FAT16 file system made and filled by mkfs.vfat and mcopy, 512-byte clusters: grubenv
// and a splash logo of two clusters each, and a config.json, at byte offset 1 MiB of an image.
func crossFixture(t *testing.T) part {
	t.Helper()
	needTools(t, "mkfs.vfat", "mcopy", "mmd", "fsck.vfat")
	p := makePart(t, 16, mib, 8*mib, "-s", "1")
	host := t.TempDir()
	tool(t, "mmd", "-i", p.drive(), "::/grub", "::/splash")
	tool(t, "mcopy", "-i", p.drive(), writeHost(t, host, "grubenv", bytes.Repeat([]byte("#"), 1024)), "::/grub/grubenv")
	tool(t, "mcopy", "-i", p.drive(), writeHost(t, host, "balena-logo.png", bytes.Repeat([]byte("P"), 1000)), "::/splash/balena-logo.png")
	tool(t, "mcopy", "-i", p.drive(), writeHost(t, host, "config.json", []byte(`{"deviceType":"raspberrypi4-64"}`)), "::/config.json")
	if out, code := p.fsck(t); code != 0 {
		t.Fatalf("fsck.vfat -n on the fresh fixture: exit %d:\n%s", code, out)
	}
	return p
}

// object finds a file or directory of p as scan sees it.
func (p part) object(t *testing.T, name string) *object {
	t.Helper()
	fsys := p.read(t)
	tab, err := fsys.fatTable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := fsys.scan(tab)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range s.objs {
		if o.path == name {
			return o
		}
	}
	t.Fatalf("%s not in the file system", name)
	return nil
}

// setFAT sets the entry of cluster c to v in every FAT copy of p (copies, when > 0, limits to the first n).
func (p part) setFAT(t *testing.T, c, v uint32, copies int) {
	t.Helper()
	fsys := p.read(t)
	f, err := os.OpenFile(p.img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off, n := entrySpan(fsys.bits, c)
	if copies == 0 {
		copies = int(fsys.fats)
	}
	for i := range int64(copies) {
		at := p.off + fsys.fatOff + i*fsys.fatBytes + off
		b := make([]byte, n)
		if _, err := f.ReadAt(b, at); err != nil {
			t.Fatal(err)
		}
		encodeEntry(b, fsys.bits, c, v)
		if _, err := f.WriteAt(b, at); err != nil {
			t.Fatal(err)
		}
	}
}

// setEntry rewrites bytes of the 8.3 entry of name.
func (p part) setEntry(t *testing.T, name string, at int, b []byte) {
	t.Helper()
	o := p.object(t, name)
	f, err := os.OpenFile(p.img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, p.off+o.entry+int64(at)); err != nil {
		t.Fatal(err)
	}
}

func le16(v uint32) []byte { return []byte{byte(v), byte(v >> 8)} }

// TestWriterRefusesCrossLinked is defect 5 of issue 13: two files sharing clusters. fsck.vfat reports it;
// the writer must refuse the file system with an error naming both files and the cluster, and leave every
// byte of the image as it was (it used to free the shared clusters when replacing one file, so that the
// next write put another file's content into grubenv).
func TestWriterRefusesCrossLinked(t *testing.T) {
	p := crossFixture(t)
	env, logo := p.object(t, "/grub/grubenv"), p.object(t, "/splash/balena-logo.png")
	if len(env.chain) != 2 || len(logo.chain) != 2 {
		t.Fatalf("fixture chains %v and %v, want 2 clusters each", env.chain, logo.chain)
	}
	// The logo's first cluster now continues into grubenv's second: both files are still two clusters long.
	p.setFAT(t, logo.chain[0], env.chain[1], 0)
	out, code := p.fsck(t)
	if code == 0 || !strings.Contains(out, "share clusters") {
		t.Fatalf("fsck.vfat -n does not see the cross-link: exit %d:\n%s", code, out)
	}
	before := p.sum(t)
	f, err := os.OpenFile(p.img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = OpenRW(f, p.off, p.size)
	if err == nil {
		t.Fatal("OpenRW accepted a cross-linked file system")
	}
	msg := err.Error()
	for _, want := range []string{"/grub/grubenv", "/splash/balena-logo.png", "cluster " + itoa(env.chain[1]), "hostos repair", "fsck.vfat"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if !errors.Is(err, ErrCorrupt) || strings.Contains(msg, "\n") {
		t.Errorf("error %q: want one line wrapping ErrCorrupt", msg)
	}
	if p.sum(t) != before {
		t.Error("the refused open changed the image")
	}
	r, err := p.read(t).Check()
	if err != nil {
		t.Fatal(err)
	}
	if kinds := findingKinds(r); !slices.Contains(kinds, CrossLink) {
		t.Errorf("Check finds %v, want a cross-link", kinds)
	}
}

// TestWriterChecksChainBeforeFreeing: a cross-link made after the writer opened the file system (by
// another program writing the directory) is caught before the writer frees the shared chain.
func TestWriterChecksChainBeforeFreeing(t *testing.T) {
	p := crossFixture(t)
	env := p.object(t, "/grub/grubenv")
	w := p.open(t)
	// The logo's directory entry now starts at grubenv's first cluster, with grubenv's size.
	p.setEntry(t, "/splash/balena-logo.png", 26, le16(env.chain[0]))
	p.setEntry(t, "/splash/balena-logo.png", 28, []byte{0x00, 0x04, 0, 0})
	before := p.sum(t)
	for name, op := range map[string]func() error{
		"replace": func() error { return w.WriteFile("/splash/balena-logo.png", []byte("new"), time.Now()) },
		"remove":  func() error { return w.Remove("/splash/balena-logo.png") },
	} {
		err := op()
		if err == nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "share cluster") {
			t.Errorf("%s of a file cross-linked since opening: %v, want a refusal", name, err)
		}
		if p.sum(t) != before {
			t.Errorf("the refused %s changed the image", name)
		}
	}
	if got, err := p.read(t).ReadFile("/grub/grubenv"); err != nil || !bytes.Equal(got, bytes.Repeat([]byte("#"), 1024)) {
		t.Errorf("grubenv after the refusals: %q, %v", got, err)
	}
}

func itoa(c uint32) string { return strconv.FormatUint(uint64(c), 10) }

func findingKinds(r Report) []Kind {
	var out []Kind
	for _, f := range r.Findings {
		out = append(out, f.Kind)
	}
	return out
}

// damage is one way to break the crossFixture file system, what Check must call it, and whether the
// writer must refuse it.
type damage struct {
	name   string
	mutate func(t *testing.T, p part)
	kinds  []Kind
	refuse bool
}

func damages() []damage {
	return []damage{
		{"cross-link", func(t *testing.T, p part) {
			env, logo := p.object(t, "/grub/grubenv"), p.object(t, "/splash/balena-logo.png")
			p.setFAT(t, logo.chain[0], env.chain[1], 0)
		}, []Kind{CrossLink, LostClusters}, true},
		{"loop", func(t *testing.T, p part) {
			env := p.object(t, "/grub/grubenv")
			p.setFAT(t, env.chain[1], env.chain[0], 0)
		}, []Kind{Loop}, true},
		{"free cluster in chain", func(t *testing.T, p part) {
			env := p.object(t, "/grub/grubenv")
			p.setFAT(t, env.chain[1], 0, 0)
			p.setFAT(t, env.chain[0], env.chain[1], 0)
		}, []Kind{BadChain}, true},
		{"bad cluster in chain", func(t *testing.T, p part) {
			env := p.object(t, "/grub/grubenv")
			p.setFAT(t, env.chain[0], 0xfff7, 0)
		}, []Kind{BadChain, LostClusters}, true},
		{"past the last cluster", func(t *testing.T, p part) {
			env := p.object(t, "/grub/grubenv")
			p.setFAT(t, env.chain[0], 0xffe0, 0)
		}, []Kind{BadChain, LostClusters}, true},
		{"start at a free cluster", func(t *testing.T, p part) {
			env := p.object(t, "/grub/grubenv")
			p.setEntry(t, "/grub/grubenv", 26, le16(env.chain[1]+40))
		}, []Kind{BadChain, LostClusters}, true},
		{"chain longer than size", func(t *testing.T, p part) {
			p.setEntry(t, "/grub/grubenv", 28, []byte{0x00, 0x02, 0, 0})
		}, []Kind{SizeMismatch}, false},
		{"chain shorter than size", func(t *testing.T, p part) {
			p.setEntry(t, "/splash/balena-logo.png", 28, []byte{0x00, 0x10, 0, 0})
		}, []Kind{SizeMismatch}, false},
		{"lost clusters", func(t *testing.T, p part) {
			p.setFAT(t, 300, 301, 0)
			p.setFAT(t, 301, 0xffff, 0)
		}, []Kind{LostClusters}, false},
		{"fat copies differ", func(t *testing.T, p part) {
			// As balena-image-fs leaves them: a new file in the first FAT only.
			p.setFAT(t, 300, 0xffff, 1)
		}, []Kind{LostClusters, FATsDiffer}, false},
		{"orphan long name", func(t *testing.T, p part) {
			// The 8.3 entry of balena-logo.png deleted, its long-name entry left: a power cut inside Remove.
			p.setEntry(t, "/splash/balena-logo.png", 0, []byte{0xe5})
		}, []Kind{OrphanLongName, LostClusters}, false},
	}
}

// TestCheckAndOpenRW: each damage is seen by fsck.vfat -n, named by Check, and refused by OpenRW (image
// unchanged) when a write could destroy a file, accepted otherwise.
func TestCheckAndOpenRW(t *testing.T) {
	for _, d := range damages() {
		t.Run(strings.ReplaceAll(d.name, " ", "-"), func(t *testing.T) {
			p := crossFixture(t)
			d.mutate(t, p)
			if out, code := p.fsck(t); code == 0 && len(strings.Split(strings.TrimSpace(out), "\n")) <= 2 {
				t.Fatalf("fsck.vfat -n sees nothing wrong:\n%s", out)
			}
			r, err := p.read(t).Check()
			if err != nil {
				t.Fatal(err)
			}
			got := findingKinds(r)
			slices.Sort(got)
			want := slices.Clone(d.kinds)
			slices.Sort(want)
			if !slices.Equal(slices.Compact(got), want) {
				t.Errorf("Check finds %v (%v), want %v", got, r.Findings, want)
			}
			before := p.sum(t)
			f, err := os.OpenFile(p.img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, err = OpenRW(f, p.off, p.size)
			switch {
			case d.refuse && err == nil:
				t.Error("OpenRW accepted it")
			case d.refuse && !errors.Is(err, ErrCorrupt):
				t.Errorf("OpenRW: %v, want ErrCorrupt", err)
			case !d.refuse && err != nil:
				t.Errorf("OpenRW refused it: %v", err)
			}
			if p.sum(t) != before {
				t.Error("OpenRW changed the image")
			}
		})
	}
}

// TestCheckClean: a file system made and filled by the tools and by the writer is clean for Check.
func TestCheckClean(t *testing.T) {
	p := crossFixture(t)
	w := p.open(t)
	if err := w.MkdirAll("/system-connections", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile("/system-connections/resin-wifi-connection-long-name", []byte("[connection]\n"), time.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := p.read(t).Check()
	if err != nil {
		t.Fatal(err)
	}
	if !r.Clean() || r.Files != 4 || r.Dirs != 4 {
		t.Errorf("Check: %+v, want clean with 4 files and 4 directories", r)
	}
	if out, code := p.fsck(t); code != 0 {
		t.Errorf("fsck.vfat -n: exit %d:\n%s", code, out)
	}
}

// TestDepthLimit: the writer refuses directories the reader could not walk; the limit is MaxDepth for
// both, and a boot file list for mtools is held to it too.
func TestDepthLimit(t *testing.T) {
	needTools(t, "mkfs.vfat", "fsck.vfat", "mcopy")
	p := makePart(t, 16, 0, 8*mib, "-s", "1")
	w := p.open(t)
	deep := strings.Repeat("/d", MaxDepth)
	if err := w.MkdirAll(deep, time.Now()); err != nil {
		t.Fatalf("MkdirAll %d deep: %v", MaxDepth, err)
	}
	if err := w.WriteFile(deep+"/f", []byte("x"), time.Now()); err != nil {
		t.Fatalf("a file in a directory %d deep: %v", MaxDepth, err)
	}
	before := p.sum(t)
	if err := w.MkdirAll(deep+"/d", time.Now()); err == nil {
		t.Errorf("MkdirAll %d deep accepted", MaxDepth+1)
	}
	if err := w.WriteFile(deep+"/d/f", []byte("x"), time.Now()); err == nil {
		t.Errorf("WriteFile %d deep accepted", MaxDepth+2)
	}
	if p.sum(t) != before {
		t.Error("a refused write changed the image")
	}
	n := 0
	if err := p.read(t).Walk(func(string, DirEntry) error { n++; return nil }); err != nil || n != MaxDepth+1 {
		t.Errorf("Walk: %d entries, %v; want %d", n, err, MaxDepth+1)
	}
	if r, err := p.read(t).Check(); err != nil || !r.Clean() {
		t.Errorf("Check: %+v, %v", r, err)
	}
	if _, err := (File{Dst: deep + "/d/f"}).check(); err == nil {
		t.Error("Copy's destination check accepted a file too deep to read")
	}
	if out, code := p.fsck(t); code != 0 {
		t.Errorf("fsck.vfat -n: exit %d:\n%s", code, out)
	}
}
