package build

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/rootfs/fat"
)

// deviceOwned are the boot partition paths that hold the device's own configuration rather than the OS:
// config.json, the fingerprint, the user's extra U-Boot environment, and everything under the splash,
// system-connections and system-proxy directories (a trailing "/" marks a directory).
var deviceOwned = []string{"config.json", config.FingerprintName, "extra_uEnv.txt", "splash/", "system-connections/", "system-proxy/"}

// CheckBootDst refuses dst, a path on the boot partition (the error says why, the caller names dst), when a boot file list (a build's, an update
// bundle's) must never write it: a device-owned path (config.json, balenaos.fingerprint, extra_uEnv.txt,
// anything under splash/, system-connections/ or system-proxy/) or one of envFiles, the bootloader
// environment files the updater switches itself. Names are compared as a FAT compares them: without
// case, "." and empty components, or trailing dots and spaces. A top-level name shaped like an 8.3 alias
// ("SYSTEM~1") is refused too, since the FAT resolves it to whatever long name holds that alias, and so
// is a path nested deeper than the FAT reader reads.
func CheckBootDst(dst string, envFiles []string) error {
	parts := bootPath(dst)
	if len(parts) == 0 {
		return nil
	}
	if len(parts)-1 > fat.MaxDepth {
		return fmt.Errorf("directories nested deeper than %d, which the boot partition's readers do not read", fat.MaxDepth)
	}
	if fat.IsAliasShaped(parts[0]) {
		return fmt.Errorf("%q has the shape of an 8.3 alias, which can name another file on the boot partition", parts[0])
	}
	for _, p := range deviceOwned {
		if under(parts, bootPath(p), strings.HasSuffix(p, "/")) {
			return fmt.Errorf("/%s belongs to the device: no OS boot file may replace it", p)
		}
	}
	for _, p := range envFiles {
		if under(parts, bootPath(p), false) {
			return fmt.Errorf("%s is the bootloader environment, which only the updater writes", p)
		}
	}
	return nil
}

// bootPath splits a boot partition path into its components, as a FAT resolves them.
func bootPath(p string) []string {
	var out []string
	for _, c := range strings.Split(path.Clean("/"+p), "/") {
		if c = strings.TrimRight(c, ". "); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// under reports whether the path parts is the path p or, when dir is set, is inside or is the directory p.
func under(parts, p []string, dir bool) bool {
	if len(parts) < len(p) || !dir && len(parts) != len(p) {
		return false
	}
	for i := range p {
		if !fat.SameName(parts[i], p[i]) {
			return false
		}
	}
	return true
}

// bootEnvFiles are the environment files of every bootloader backend: a boot file list is not tied to one.
func bootEnvFiles() []string {
	var out []string
	for _, name := range []string{config.BootloaderGRUB, config.BootloaderUBoot, config.BootloaderBalenaBL} {
		if b, err := bootenv.ForBootloader(name, bootenv.Parts{A: 2, B: 3}); err == nil {
			out = append(out, b.Files()...)
		}
	}
	return out
}

// BootFile is one parsed "src:dst" entry of a boot partition file list.
type BootFile struct {
	Src string // as written: relative to the deploy directory unless absolute
	Dst string // absolute path inside the boot partition; ends in "/" for a directory
}

// ParseBootFile parses "src:dst" with meta-balena's semantics: a missing dst means "/src". It refuses a
// destination CheckBootDst refuses for any bootloader.
func ParseBootFile(s string) (BootFile, error) {
	src, dst, _ := strings.Cut(s, ":")
	if src == "" {
		return BootFile{}, fmt.Errorf("boot file %q: empty source", s)
	}
	if dst == "" {
		dst = "/" + strings.TrimPrefix(src, "/")
	}
	if !strings.HasPrefix(dst, "/") {
		dst = "/" + dst
	}
	clean := path.Clean(dst)
	if clean == "/" && !strings.HasSuffix(dst, "/") || strings.Contains(dst, "/../") || strings.HasSuffix(dst, "/..") {
		return BootFile{}, fmt.Errorf("boot file %q: bad destination %q", s, dst)
	}
	if err := CheckBootDst(dst, bootEnvFiles()); err != nil {
		return BootFile{}, fmt.Errorf("boot file %q: %w", s, err)
	}
	return BootFile{Src: src, Dst: dst}, nil
}

// hostFile is a file to put into the boot partition, from a host path or from memory.
type hostFile struct {
	Dst  string
	Src  string
	Data []byte
}

// Expand resolves the entry against deployDir into concrete files: a directory source copies its
// top-level regular files, a destination ending in "/" is a directory, and "src.sig" travels along as
// "dst.sig".
func (b BootFile) expand(deployDir string) ([]hostFile, error) {
	src := b.Src
	if !filepath.IsAbs(src) {
		src = filepath.Join(deployDir, src)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("boot file %s: %w", b.Src, err)
	}
	var out []hostFile
	if fi.IsDir() {
		if !strings.HasSuffix(b.Dst, "/") {
			return nil, fmt.Errorf("boot file %s: a directory needs a destination ending in /", b.Src)
		}
		ents, err := os.ReadDir(src)
		if err != nil {
			return nil, fmt.Errorf("boot file %s: %w", b.Src, err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				out = append(out, hostFile{Dst: path.Join(b.Dst, e.Name()), Src: filepath.Join(src, e.Name())})
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Dst < out[j].Dst })
		return out, checkHostFiles(out)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("boot file %s: not a regular file", b.Src)
	}
	dst := b.Dst
	if strings.HasSuffix(dst, "/") {
		dst = path.Join(dst, filepath.Base(src))
	}
	out = append(out, hostFile{Dst: path.Clean(dst), Src: src})
	if sfi, err := os.Stat(src + ".sig"); err == nil && sfi.Mode().IsRegular() {
		out = append(out, hostFile{Dst: path.Clean(dst) + ".sig", Src: src + ".sig"})
	}
	return out, checkHostFiles(out)
}

// checkHostFiles refuses expanded files that land on a path CheckBootDst refuses.
func checkHostFiles(files []hostFile) error {
	env := bootEnvFiles()
	for _, f := range files {
		if err := CheckBootDst(f.Dst, env); err != nil {
			return fmt.Errorf("boot file %s: %w", f.Dst, err)
		}
	}
	return nil
}

// expandBootFiles parses and expands "src:dst" entries against deployDir, in the order given: where two
// name the same destination, the later one is meant to win.
func expandBootFiles(entries []string, deployDir string) ([]hostFile, error) {
	var out []hostFile
	for _, s := range entries {
		bf, err := ParseBootFile(s)
		if err != nil {
			return nil, err
		}
		hf, err := bf.expand(deployDir)
		if err != nil {
			return nil, err
		}
		out = append(out, hf...)
	}
	return out, nil
}
