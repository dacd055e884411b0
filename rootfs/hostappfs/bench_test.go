package hostappfs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/tree"
	"github.com/hostos/hostos/tests/testtool"
)

// bootTree is a balenaOS-like /resin-boot: a few top files, overlays with a few hundred device tree
// overlays, EFI/BOOT and splash, nested up to three directories deep; name -> size.
func bootTree() map[string]int {
	files := map[string]int{
		"resin-boot/kernel8.img":              8 << 20,
		"resin-boot/bcm2711-rpi-4-b.dtb":      48 << 10,
		"resin-boot/start4.elf":               2 << 20,
		"resin-boot/fixup4.dat":               5 << 10,
		"resin-boot/cmdline.txt":              100,
		"resin-boot/os-release":               300,
		"resin-boot/EFI/BOOT/bootx64.efi":     64 << 10,
		"resin-boot/EFI/BOOT/grub.cfg":        2 << 10,
		"resin-boot/EFI/BOOT/fonts/unicode":   32 << 10,
		"resin-boot/splash/balena-logo.png":   8 << 10,
		"resin-boot/grub/x86_64-efi/boot.mod": 4 << 10,
	}
	for i := 0; i < 240; i++ {
		files[fmt.Sprintf("resin-boot/overlays/overlay-%03d.dtbo", i)] = 1<<10 + i*16
	}
	for i := 0; i < 40; i++ {
		files[fmt.Sprintf("resin-boot/grub/x86_64-efi/mod%02d.mod", i)] = 2 << 10
	}
	return files
}

func content(name string, size int) string {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(len(name) + i)
	}
	return string(b)
}

// benchSlots makes the same OS as a hostapp slot of four layers (the boot tree in the first, a quarter of
// it replaced by the third, an opaque directory and a whiteout in the fourth, an unrelated second
// layer) and as a flat slot, and returns both filesystem images.
func benchSlots(b *testing.B) (hostapp, flat string) {
	files := bootTree()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	dirsOf := func(ns []string) []entry {
		seen := map[string]bool{}
		var out []entry
		for _, n := range ns {
			var chain []string
			for dir := path.Dir(n); dir != "."; dir = path.Dir(dir) {
				chain = append([]string{dir}, chain...)
			}
			for _, dir := range chain {
				if !seen[dir] {
					seen[dir] = true
					out = append(out, d(dir))
				}
			}
		}
		return out
	}
	var base, upper []entry
	var upperNames []string
	for i, n := range names {
		base = append(base, f(n, content(n, files[n])))
		if i%4 == 0 {
			upperNames = append(upperNames, n)
			upper = append(upper, f(n, content(n+"2", files[n])))
		}
	}
	base = append(dirsOf(names), base...)
	base = append(base, d("etc"), f("etc/os-release", osRelease("1.0.0")), f("resin-boot/old", "x"))
	upper = append(dirsOf(upperNames), upper...)
	other := []entry{d("boot"), f("boot/init", "#!/bin/sh\n"), d("usr"), d("usr/lib"), f("usr/lib/os-release", osRelease("2.0.0"))}
	for i := 0; i < 50; i++ {
		other = append(other, f(fmt.Sprintf("usr/lib/lib%02d.so", i), content("lib", 4<<10)))
	}
	top := []entry{d("resin-boot"), whiteoutOf("resin-boot", "old"), d("resin-boot/splash"), opaqueDir("resin-boot/splash"),
		f("resin-boot/splash/balena-logo.png", content("logo", 8<<10))}
	img, err := mutate.AppendLayers(empty.Image, layerOf(b, base...), layerOf(b, other...), layerOf(b, upper...), layerOf(b, top...))
	if err != nil {
		b.Fatal(err)
	}
	hostapp, _ = slotImageSized(b, img, 64<<20)

	// The flat slot: the merged view, written out.
	testtool.Need(b, "mkfs.ext4")
	dir := b.TempDir()
	for _, n := range names {
		body := content(n, files[n])
		for _, u := range upperNames {
			if u == n {
				body = content(n+"2", files[n])
			}
		}
		if n == "resin-boot/splash/balena-logo.png" {
			body = content("logo", 8<<10)
		}
		p := filepath.Join(dir, "stage", n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	staged, err := tree.Scan(filepath.Join(dir, "stage"))
	if err != nil {
		b.Fatal(err)
	}
	flat = filepath.Join(dir, "flat.ext4")
	if err := os.WriteFile(flat, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(flat, 64<<20); err != nil {
		b.Fatal(err)
	}
	if err := ext4.Make(context.Background(), flat, 0, 64<<20, ext4.Options{Time: when}, staged); err != nil {
		b.Fatal(err)
	}
	return hostapp, flat
}

// walkTree reads every regular file under dir as hostapp/update/source's resinBoot does (ReadDir, Lstat
// of each entry, Open of each file) and returns their count and bytes.
func walkTree(o *OS, dir string) (files, bytes int, err error) {
	names, err := o.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, n := range names {
		p := path.Join(dir, n)
		fi, err := o.Lstat(p)
		if err != nil {
			return 0, 0, err
		}
		switch {
		case fi.IsDir():
			nf, nb, err := walkTree(o, p)
			if err != nil {
				return 0, 0, err
			}
			files, bytes = files+nf, bytes+nb
		case fi.Mode().Type() == 0:
			r, err := o.Open(p)
			if err != nil {
				return 0, 0, err
			}
			n, err := io.Copy(io.Discard, r)
			r.Close()
			if err != nil {
				return 0, 0, err
			}
			files, bytes = files+1, bytes+int(n)
		}
	}
	return files, bytes, nil
}

// BenchmarkReadResinBoot reads a /resin-boot of a few hundred files through a flat and a hostapp slot
// holding the same OS; run with -count to interleave them.
func BenchmarkReadResinBoot(b *testing.B) {
	hostapp, flat := benchSlots(b)
	want := len(bootTree())
	for _, c := range []struct{ name, img string }{{"flat", flat}, {"hostapp", hostapp}} {
		b.Run(c.name, func(b *testing.B) {
			r, err := os.Open(c.img)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			fi, _ := r.Stat()
			for i := 0; i < b.N; i++ {
				o, err := OpenSlot(r, 0, fi.Size())
				if err != nil {
					b.Fatal(err)
				}
				n, _, err := walkTree(o, "/resin-boot")
				if err != nil || n != want {
					b.Fatalf("%s: %d files, %v; want %d", c.name, n, err, want)
				}
			}
		})
	}
}
