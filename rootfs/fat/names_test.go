package fat

import (
	"bytes"
	"strings"
	"testing"
)

func TestNameEntries(t *testing.T) {
	none := func([11]byte) bool { return false }
	for _, tc := range []struct {
		name  string
		short string // the 11 on-disk bytes
		nt    byte
		slots int
	}{
		{"splash", "SPLASH     ", ntLowerBase, 0},
		{"README.txt", "README  TXT", ntLowerExt, 0},
		{"lower.txt", "LOWER   TXT", ntLowerBase | ntLowerExt, 0},
		{"NEWFILE.TXT", "NEWFILE TXT", 0, 0},
		{"1.2", "1       2  ", 0, 0},
		{"os-release", "OS-REL~1   ", 0, 1},
		{"config.json", "CONFIG~1JSO", 0, 1},
		{"Mixed.Txt", "MIXED   TXT", 0, 1}, // only the case kept it from fitting: no numeric tail
		{".bashrc", "BASHRC~1   ", 0, 1},
		{"a+b;c.tar.gz", "A_B_CT~1GZ ", 0, 1},
		{"resin wifi 01", "RESINW~1   ", 0, 1}, // 13 UTF-16 units: one slot, no terminator
		{"Ünïcödé ✓.txt", "_N_C_D~1TXT", 0, 1},
		{"🚀", "_~1        ", 0, 1},
		{strings.Repeat("x", 255), "XXXXXX~1   ", 0, 20},
	} {
		ents, err := nameEntries(tc.name, none)
		if err != nil {
			t.Errorf("%q: %v", tc.name, err)
			continue
		}
		short := ents[len(ents)-1]
		if got := string(short[:11]); got != tc.short || short[12] != tc.nt || len(ents)-1 != tc.slots {
			t.Errorf("%q: 8.3 %q flags %#x with %d long-name slots; want %q %#x %d", tc.name, got, short[12], len(ents)-1, tc.short, tc.nt, tc.slots)
		}
	}

	// Numeric tails count up past the aliases in use, shortening the base to keep 8 characters.
	used := map[string]bool{}
	taken := func(raw [11]byte) bool { return used[string(raw[:])] }
	for i := 1; i <= 12; i++ {
		ents, err := nameEntries("resin-wifi-connection", taken)
		if err != nil {
			t.Fatal(err)
		}
		raw := string(ents[len(ents)-1][:11])
		used[raw] = true
		want := "RESIN-~" + string(rune('0'+i)) + "   "
		if i >= 10 {
			want = "RESIN~1" + string(rune('0'+i-10)) + "   "
		}
		if raw != want {
			t.Errorf("alias %d = %q, want %q", i, raw, want)
		}
	}
	// A name that fits 8.3 but whose 8.3 form is taken (say by the volume label) gets a long name.
	ents, err := nameEntries("label", func(raw [11]byte) bool { return string(raw[:]) == "LABEL      " })
	if err != nil || len(ents) != 2 || string(ents[1][:11]) != "LABEL~1    " {
		t.Errorf("taken 8.3 name: %v, %q", err, ents)
	}

	for _, bad := range []string{"", ".", "..", "a*b", "a/b", `a\b`, "a:b", "a?", "<a>", `"a"`, "a|b",
		"tab\there", "del\x7f", "\xff\xfe", "trailing.", "trailing ", strings.Repeat("é", 256)} {
		if _, err := nameEntries(bad, none); err == nil {
			t.Errorf("nameEntries accepted %q", bad)
		}
	}
}

// FuzzNameEntries checks that every name the writer accepts reads back exactly through the reader's decoder,
// with a legal 8.3 alias and as many slots as Space budgets.
func FuzzNameEntries(f *testing.F) {
	for _, s := range []string{"splash", "os-release", "config.json", "Mixed.Txt", ".bashrc", "Ünïcödé ✓.txt",
		"🚀", "a+b;c.tar.gz", "resin wifi 01", "..x", " lead", "x.y.z", "A~1.TXT", strings.Repeat("ab", 70)} {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, name string, busy uint8) {
		// busy makes the first aliases tried appear taken.
		tried := 0
		taken := func([11]byte) bool { tried++; return tried <= int(busy) }
		ents, err := nameEntries(name, taken)
		if validName(name) != nil {
			if err == nil {
				t.Fatalf("%q: invalid name encoded", name)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if busy == 0 && int64(len(ents)-1) != slotsFor(name) {
			t.Errorf("%q: %d long-name slots, Space budgets %d", name, len(ents)-1, slotsFor(name))
		}
		var b []byte
		for _, e := range ents {
			b = append(b, e[:]...)
		}
		b = append(b, make([]byte, dirEntrySize)...)
		es, at := (&FS{bits: 16}).decodeDir(b)
		if len(es) != 1 || es[0].Name != name || at[0] != (len(ents)-1)*dirEntrySize || !es[0].match(name) {
			t.Fatalf("%q: decoded as %+v at %v", name, es, at)
		}
		short := ents[len(ents)-1][:11]
		if short[0] == ' ' || short[0] == '.' || short[0] == 0xe5 || short[0] == 0 {
			t.Errorf("%q: 8.3 name %q starts badly", name, short)
		}
		for i, c := range short {
			ok := 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == ' ' || bytes.IndexByte([]byte("!#$%&'()-@^_`{}~"), c) >= 0
			if !ok {
				t.Errorf("%q: 8.3 name %q holds %q at %d", name, short, c, i)
			}
		}
		for _, part := range [][]byte{short[:8], short[8:]} {
			if bytes.IndexByte(bytes.TrimRight(part, " "), ' ') >= 0 {
				t.Errorf("%q: 8.3 name %q has an embedded space", name, short)
			}
		}
	})
}
