package disk

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseBmapRoundTrip parses what Bmap writes: the ranges are the image's data, and an edited map fails
// its file checksum.
func TestParseBmapRoundTrip(t *testing.T) {
	img := filepath.Join(t.TempDir(), "img")
	makeSparse(t, img, 8<<20, []chunk{{off: 0, n: 4096}, {off: 1 << 20, n: 10000}, {off: 5 << 20, n: 3 << 20}}, 1)
	var b bytes.Buffer
	if err := Bmap(img, &b, nil); err != nil {
		t.Fatal(err)
	}
	m, err := ParseBmap(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if m.ImageSize != 8<<20 || m.BlockSize != 4096 || m.ChecksumType != "sha256" {
		t.Fatalf("header %+v", m)
	}
	want := [][2]int64{{0, 0}, {256, 258}, {1280, 2047}}
	if len(m.Ranges) != len(want) {
		t.Fatalf("ranges %+v, want %v", m.Ranges, want)
	}
	for i, r := range m.Ranges {
		if r.First != want[i][0] || r.Last != want[i][1] {
			t.Fatalf("range %d = %+v, want %v", i, r, want[i])
		}
	}
	edited := bytes.Replace(b.Bytes(), []byte("> 0 <"), []byte("> 1 <"), 1)
	if _, err := ParseBmap(edited); err == nil || !strings.Contains(err.Error(), "BmapFileChecksum") {
		t.Fatalf("edited map: %v", err)
	}
}

func TestParseBmapRejects(t *testing.T) {
	head := `<bmap version="2.0"><ImageSize>8192</ImageSize><BlockSize>4096</BlockSize><BlocksCount>2</BlocksCount><ChecksumType>sha256</ChecksumType><BlockMap>`
	sum := strings.Repeat("a", 64)
	for name, doc := range map[string]string{
		"not xml":       "hello",
		"version":       `<bmap version="9.0"></bmap>`,
		"count":         strings.Replace(head, "<BlocksCount>2", "<BlocksCount>3", 1) + "</BlockMap></bmap>",
		"past end":      head + `<Range chksum="` + sum + `">1-2</Range></BlockMap></bmap>`,
		"overlap":       head + `<Range chksum="` + sum + `">0-1</Range><Range chksum="` + sum + `">1</Range></BlockMap></bmap>`,
		"bad sum":       head + `<Range chksum="zz">0</Range></BlockMap></bmap>`,
		"reversed":      head + `<Range chksum="` + sum + `">1-0</Range></BlockMap></bmap>`,
		"checksum type": strings.Replace(head, "sha256", "md5", 1) + "</BlockMap></bmap>",
		"block size":    strings.Replace(head, "<BlockSize>4096", "<BlockSize>0", 1) + "</BlockMap></bmap>",
	} {
		if _, err := ParseBmap([]byte(doc)); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want a one-line error", name, err)
		}
	}
}

func FuzzParseBmap(f *testing.F) {
	if b, err := os.ReadFile("testdata/demo.bmap"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`<bmap version="2.0"><ImageSize>8192</ImageSize><BlockSize>4096</BlockSize><BlocksCount>2</BlocksCount><ChecksumType>sha256</ChecksumType><BlockMap><Range chksum="` + strings.Repeat("a", 64) + `">0-1</Range></BlockMap></bmap>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseBmap(b)
		if err != nil {
			return
		}
		prev := int64(-1)
		for _, r := range m.Ranges {
			if r.First <= prev || r.Last < r.First || r.Last >= m.BlocksCount {
				t.Fatalf("accepted bad range %+v", r)
			}
			prev = r.Last
		}
	})
}
