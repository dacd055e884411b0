package fat

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxTail is the largest numeric tail tried for an 8.3 alias ("BASIS~N").
const maxTail = 999999

// validName accepts a name the writer can store: valid UTF-8, no character FAT forbids, at most 255 UTF-16
// code units, and no trailing dot or space (Windows would drop them).
func validName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("fat name %q: not a file name", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("fat name %q: not valid UTF-8", name)
	case strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
		return fmt.Errorf("fat name %q: ends with a dot or space", name)
	}
	for _, r := range name {
		if r < ' ' || r == 0x7f || strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Errorf("fat name %q: holds %q, which fat forbids", name, r)
		}
	}
	if n := len(utf16.Encode([]rune(name))); n > 255 {
		return fmt.Errorf("fat name %q: %d UTF-16 code units, at most 255 allowed", name, n)
	}
	return nil
}

// nameEntries encodes a valid name as the directory entries that store it, in on-disk order: the long-name
// slots, if any, then the 8.3 entry, of which only the name (bytes 0-10) and the case flags (byte 12) are set.
// A name that fits 8.3 in one case per part is stored as a bare 8.3 entry with the Windows NT lower-case flags;
// any other name gets long-name slots and an 8.3 alias: the name itself in upper case when only its case kept
// it from fitting, otherwise "BASIS~N.EXT" with the lowest N. taken reports whether an 8.3 name is in use in
// the directory.
func nameEntries(name string, taken func(short [11]byte) bool) ([][dirEntrySize]byte, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	var short [dirEntrySize]byte
	if raw, nt, ok := exactShort(name); ok && !taken(raw) {
		copy(short[:], raw[:])
		short[12] = nt
		return [][dirEntrySize]byte{short}, nil
	}
	raw, ok := alias(name, taken)
	if !ok {
		return nil, fmt.Errorf("fat name %q: no unused 8.3 alias: %w", name, ErrNoSpace)
	}
	copy(short[:], raw[:])
	return append(longSlots(name, checksum(raw[:])), short), nil
}

// exactShort is name as a bare 8.3 entry and its NT lower-case flags, when it fits one.
func exactShort(name string) (raw [11]byte, nt byte, ok bool) {
	if !fitsShort(name) {
		return raw, 0, false
	}
	base, ext, _ := strings.Cut(name, ".")
	if strings.ToUpper(base) != base {
		nt |= ntLowerBase
	}
	if strings.ToUpper(ext) != ext {
		nt |= ntLowerExt
	}
	return pad83(strings.ToUpper(base), strings.ToUpper(ext)), nt, true
}

// pad83 is the 11-byte on-disk form of an 8.3 name's parts.
func pad83(base, ext string) [11]byte {
	var raw [11]byte
	for i := range raw {
		raw[i] = ' '
	}
	copy(raw[:8], base)
	copy(raw[8:], ext)
	return raw
}

// alias picks the 8.3 alias of a name that needs long-name slots.
func alias(name string, taken func([11]byte) bool) ([11]byte, bool) {
	base, ext, lossy := basis(name)
	if !lossy {
		if raw := pad83(base, ext); !taken(raw) {
			return raw, true
		}
	}
	for n := 1; n <= maxTail; n++ {
		tail := "~" + strconv.Itoa(n)
		if raw := pad83(base[:min(len(base), 8-len(tail))]+tail, ext); !taken(raw) {
			return raw, true
		}
	}
	return [11]byte{}, false
}

// basis is the upper-case 8.3 basis of a name: leading dots, spaces and all dots but the one before the
// extension dropped, characters an 8.3 name cannot hold replaced by '_', base cut to 8 and extension to 3
// characters. lossy reports whether anything but the case changed.
func basis(name string) (base, ext string, lossy bool) {
	s := strings.TrimLeft(name, ".")
	lossy = len(s) != len(name)
	b, e := s, ""
	if dot := strings.LastIndexByte(s, '.'); dot >= 0 {
		b, e = s[:dot], s[dot+1:]
	}
	conv := func(part string, limit int) string {
		var out []byte
		for _, r := range part {
			switch {
			case r == ' ' || r == '.':
				lossy = true
				continue
			case r > 0x7e || strings.ContainsRune("+,;=[]", r):
				r, lossy = '_', true
			case 'a' <= r && r <= 'z':
				r -= 'a' - 'A'
			}
			if len(out) == limit {
				lossy = true
				break
			}
			out = append(out, byte(r))
		}
		return string(out)
	}
	base, ext = conv(b, 8), conv(e, 3)
	if base == "" {
		base, lossy = "_", true
	}
	return base, ext, lossy
}

// longSlots encodes name as VFAT long-name entries for an 8.3 entry with checksum sum, in on-disk order
// (highest ordinal, flagged 0x40, first).
func longSlots(name string, sum byte) [][dirEntrySize]byte {
	u := utf16.Encode([]rune(name))
	if len(u)%13 != 0 {
		u = append(u, 0)
		for len(u)%13 != 0 {
			u = append(u, 0xffff)
		}
	}
	n := len(u) / 13
	out := make([][dirEntrySize]byte, n)
	le := binary.LittleEndian
	for i := range out {
		ord := n - i
		e := &out[i]
		e[0] = byte(ord)
		if i == 0 {
			e[0] |= 0x40
		}
		e[11], e[13] = attrLongName, sum
		part := u[(ord-1)*13 : ord*13]
		k := 0
		for _, r := range lfnChars {
			for j := r[0]; j < r[1]; j += 2 {
				le.PutUint16(e[j:], part[k])
				k++
			}
		}
	}
	return out
}

// SameName reports whether two names (single path components) name the same directory entry on a FAT:
// compared case-insensitively as this package's lookups compare them (strings.EqualFold), after dropping
// the trailing dots and spaces that Windows strips from a name (Linux's vfat strips the dots).
func SameName(a, b string) bool {
	return strings.EqualFold(strings.TrimRight(a, ". "), strings.TrimRight(b, ". "))
}

// IsAliasShaped reports whether name has the shape of a generated 8.3 alias with a numeric tail
// ("SYSTEM~1", "EXTRA_~1.TXT"): a FAT resolves such a name to whichever long name holds that alias.
func IsAliasShaped(name string) bool {
	base, ext, dot := strings.Cut(strings.TrimRight(name, ". "), ".")
	if len(base) == 0 || len(base) > 8 || len(ext) > 3 || dot && strings.Contains(ext, ".") {
		return false
	}
	tilde := strings.LastIndexByte(base, '~')
	if tilde < 0 || tilde == len(base)-1 {
		return false
	}
	for _, c := range base[tilde+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
