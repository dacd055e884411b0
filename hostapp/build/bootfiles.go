package build

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// BootFile is one parsed "src:dst" entry of a boot partition file list.
type BootFile struct {
	Src string // as written: relative to the deploy directory unless absolute
	Dst string // absolute path inside the boot partition; ends in "/" for a directory
}

// ParseBootFile parses "src:dst" with meta-balena's semantics: a missing dst means "/src".
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
		return out, nil
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
	return out, nil
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
