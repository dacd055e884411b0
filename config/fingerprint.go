package config

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
)

// FingerprintName is the boot partition's fingerprint file, written last.
const FingerprintName = "balenaos.fingerprint"

// ConfigName is the name of config.json; files of this name are left out of the fingerprint.
const ConfigName = "config.json"

// FileSum is one file of the boot partition and its MD5. Path is relative to the partition root,
// slash-separated; a leading "/" or "./" is accepted and ignored.
type FileSum struct {
	Path string
	MD5  [16]byte
}

// Fingerprint returns the content of balenaos.fingerprint for the given files. The format follows
// meta-balena's resin_boot_dirgen_and_deploy (meta-balena-common/classes/image-balena.bbclass):
//
//	find ${BALENA_BOOT_WORKDIR} -xdev -type f ! -name balenaos.fingerprint ! -name config.json \
//	    -exec md5sum {} \; | sed "s#${BALENA_BOOT_WORKDIR}##g" | sort -k2
//
// so each line is md5sum's "<32 hex>  /path" with the path absolute from the partition root (the
// leading "/" is what the on-device hook 1-bootfiles greps for), and every file whose base name is
// config.json or balenaos.fingerprint, at any depth, is left out. md5sum's escaping is kept: a path
// holding "\", newline or carriage return is written escaped on a line starting with "\".
//
// One deliberate difference: bitbake runs that sort under LC_ALL=en_US.UTF-8, a locale collation;
// here lines are sorted by the bytes of the path (LC_ALL=C sort -k2), which is reproducible on any
// host. Readers (md5sum -c, the 1-bootfiles hook) do not depend on the order.
//
// To check a boot directory with md5sum, strip the leading slash:
//
//	sed 's#^\(\\\?[0-9a-f]\{32\}\)  /#\1  #' balenaos.fingerprint | md5sum -c -
func Fingerprint(files []FileSum) []byte {
	type line struct {
		name    string // md5sum-escaped "/path", the sort key
		escaped bool
		sum     string
	}
	lines := make([]line, 0, len(files))
	for _, f := range files {
		p := normalizeFingerprintPath(f.Path)
		if p == "" {
			continue
		}
		if base := path.Base(p); base == FingerprintName || base == ConfigName {
			continue
		}
		name, escaped := escapeSumPath("/" + p)
		lines = append(lines, line{name: name, escaped: escaped, sum: hex.EncodeToString(f.MD5[:])})
	}
	// sort -k2 compares from the blanks before the path to the end of the line, then whole lines
	// (equal names are equally escaped, so the tie-break is the sum).
	sort.Slice(lines, func(i, j int) bool {
		if lines[i].name != lines[j].name {
			return lines[i].name < lines[j].name
		}
		return lines[i].sum < lines[j].sum
	})
	var b bytes.Buffer
	for _, l := range lines {
		if l.escaped {
			b.WriteByte('\\')
		}
		b.WriteString(l.sum)
		b.WriteString("  ")
		b.WriteString(l.name)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// normalizeFingerprintPath cleans p to a root-relative path without leading "/" or "./".
// It returns "" for the root itself.
func normalizeFingerprintPath(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}

// escapeSumPath escapes a file name the way GNU md5sum does.
func escapeSumPath(p string) (string, bool) {
	if !strings.ContainsAny(p, "\\\n\r") {
		return p, false
	}
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`)
	return r.Replace(p), true
}

func unescapeSumPath(p string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '\\' {
			b.WriteByte(p[i])
			continue
		}
		i++
		if i == len(p) {
			return "", errors.New("trailing backslash")
		}
		switch p[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			return "", fmt.Errorf("unknown escape \\%c", p[i])
		}
	}
	return b.String(), nil
}

// ParseFingerprint reads balenaos.fingerprint (or any md5sum output): "<md5>  path" or "<md5> *path"
// lines, md5sum-escaped lines starting with "\", paths with or without a leading "/". Returned paths
// are root-relative without a leading slash, in file order. Blank lines are skipped; anything else
// malformed is an error naming the line.
func ParseFingerprint(data []byte) ([]FileSum, error) {
	var out []FileSum
	for n, raw := range strings.Split(string(data), "\n") {
		if raw == "" {
			continue
		}
		line := raw
		escaped := strings.HasPrefix(line, `\`)
		if escaped {
			line = line[1:]
		}
		if len(line) < 35 || (line[32:34] != "  " && line[32:34] != " *") {
			return nil, fmt.Errorf("fingerprint line %d: not \"<md5>  <path>\"", n+1)
		}
		var fs FileSum
		if _, err := hex.Decode(fs.MD5[:], []byte(line[:32])); err != nil {
			return nil, fmt.Errorf("fingerprint line %d: md5: %w", n+1, err)
		}
		name := line[34:]
		if escaped {
			var err error
			if name, err = unescapeSumPath(name); err != nil {
				return nil, fmt.Errorf("fingerprint line %d: path: %w", n+1, err)
			}
		}
		fs.Path = normalizeFingerprintPath(name)
		if fs.Path == "" {
			return nil, fmt.Errorf("fingerprint line %d: empty path", n+1)
		}
		out = append(out, fs)
	}
	return out, nil
}

// ErrFingerprintMismatch is matched (errors.Is) by the error VerifyFingerprint returns when files
// differ from the fingerprint.
var ErrFingerprintMismatch = errors.New("boot files differ from fingerprint")

// FingerprintMismatch lists what VerifyFingerprint found wrong; paths are root-relative.
type FingerprintMismatch struct {
	Missing  []string // listed in the fingerprint, absent from the files
	Modified []string // present with another MD5
}

func (e *FingerprintMismatch) Error() string {
	var parts []string
	if len(e.Missing) > 0 {
		parts = append(parts, "missing: "+strings.Join(e.Missing, ", "))
	}
	if len(e.Modified) > 0 {
		parts = append(parts, "modified: "+strings.Join(e.Modified, ", "))
	}
	return "boot files differ from fingerprint: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrFingerprintMismatch) true.
func (e *FingerprintMismatch) Is(target error) bool { return target == ErrFingerprintMismatch }

// VerifyFingerprint checks files (path → MD5; paths as in FileSum) against a fingerprint, as
// md5sum -c does: every listed file must be present with the listed MD5. Files the fingerprint does
// not list (config.json, system-connections added later) are ignored. The error is a
// *FingerprintMismatch listing every missing and modified file, or a parse error.
func VerifyFingerprint(fp []byte, files map[string][16]byte) error {
	sums, err := ParseFingerprint(fp)
	if err != nil {
		return err
	}
	have := make(map[string][16]byte, len(files))
	for p, sum := range files {
		have[normalizeFingerprintPath(p)] = sum
	}
	var mm FingerprintMismatch
	for _, s := range sums {
		got, ok := have[s.Path]
		switch {
		case !ok:
			mm.Missing = append(mm.Missing, s.Path)
		case got != s.MD5:
			mm.Modified = append(mm.Modified, s.Path)
		}
	}
	if len(mm.Missing) == 0 && len(mm.Modified) == 0 {
		return nil
	}
	sort.Strings(mm.Missing)
	sort.Strings(mm.Modified)
	return &mm
}
