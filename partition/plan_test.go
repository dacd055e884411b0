package partition

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// balenaParts is the RPi/x86 balenaOS layout: 40/320/320/20/192 MiB.
func balenaParts() []PartSpec {
	return []PartSpec{
		{Label: "resin-boot", Size: 40 * MiB, MBRType: TypeFAT16LBA, Bootable: true},
		{Label: "resin-rootA", Size: 320 * MiB, MBRType: TypeLinux},
		{Label: "resin-rootB", Size: 320 * MiB, MBRType: TypeLinux},
		{Label: "resin-state", Size: 20 * MiB, MBRType: TypeLinux},
		{Label: "resin-data", Size: 192 * MiB, MBRType: TypeLinux},
	}
}

// planAndWrite plans l, writes it to a sparse image of the planned size and returns the table and the image.
func planAndWrite(t *testing.T, l Layout) (*Table, string, int64) {
	t.Helper()
	tab, err := Plan(l)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	size := l.TotalSize
	if size == 0 {
		size = MinSize(l)
	}
	return tab, writeImage(t, size, tab), size
}

func TestPlanBalena(t *testing.T) {
	const align = 4 * MiB
	tests := []struct {
		name  string
		kind  Kind
		total int64
	}{
		{"msdos smallest", MSDOS, 0},
		{"msdos 2 GiB", MSDOS, 2048 * MiB},
		{"msdos odd size", MSDOS, 1500*MiB + 4096 + 512},
		{"gpt smallest", GPT, 0},
		{"gpt 2 GiB", GPT, 2048 * MiB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := Layout{Kind: tt.kind, Alignment: align, Parts: balenaParts(), TotalSize: tt.total, Seed: []byte(tt.name)}
			tab, path, size := planAndWrite(t, l)
			sf := newSfdisk(t, path, 512)
			got := sf.JSON()
			header, stderr := sf.Dump()
			if stderr != "" {
				t.Errorf("sfdisk -d complains: %s", stderr)
			}
			byNum := map[int]sfdiskPartition{}
			for _, p := range got.Partitions {
				byNum[p.number(path)] = p
			}
			sec := func(n int) (start, end int64) { // byte range of partition n as sfdisk reads it
				p, ok := byNum[n]
				if !ok {
					t.Fatalf("sfdisk does not see partition %d: %+v", n, got.Partitions)
				}
				return p.Start * 512, (p.Start + p.Size) * 512
			}
			// The expected numbering: msdos 1,2,3 then logicals 5,6; gpt 1-5.
			nums := []int{1, 2, 3, 5, 6}
			if tt.kind == GPT {
				nums = []int{1, 2, 3, 4, 5}
			}
			prevEnd := int64(align) // the first Alignment bytes are free
			for i, spec := range balenaParts() {
				n := nums[i]
				p := byNum[n]
				start, end := sec(n)
				wantStart := prevEnd
				if n >= 5 && tt.kind == MSDOS {
					wantStart += align // its own gap, holding the EBR
				}
				if start != wantStart {
					t.Errorf("partition %d (%s) starts at %d MiB, want %d MiB", n, spec.Label, start/MiB, wantStart/MiB)
				}
				if start%align != 0 || end%align != 0 {
					t.Errorf("partition %d: [%d, %d) is not aligned to 4 MiB", n, start, end)
				}
				last := i == len(balenaParts())-1
				if !last && end-start != spec.Size {
					t.Errorf("partition %d: size %d MiB, want %d MiB", n, (end-start)/MiB, spec.Size/MiB)
				}
				if last {
					limit := size / align * align
					if tt.kind == GPT {
						limit = (got.LastLBA + 1) * 512 / align * align
					}
					if end-start < spec.Size || end != limit {
						t.Errorf("partition %d (last): ends at %d, want it grown to %d (size at least %d MiB)", n, end, limit, spec.Size/MiB)
					}
				}
				switch tt.kind {
				case MSDOS:
					if p.Type != fmt.Sprintf("%x", spec.MBRType) || p.Bootable != spec.Bootable {
						t.Errorf("partition %d: type %s bootable %v, want %x %v", n, p.Type, p.Bootable, spec.MBRType, spec.Bootable)
					}
				case GPT:
					wantType := LinuxFilesystem
					if i == 0 {
						wantType = MicrosoftBasicData
					}
					if !strings.EqualFold(p.Type, wantType.String()) || p.Name != spec.Label {
						t.Errorf("partition %d: type %s name %q, want %s %q", n, p.Type, p.Name, wantType, spec.Label)
					}
					if strings.Contains(p.Attrs, "LegacyBIOSBootable") != spec.Bootable {
						t.Errorf("partition %d: attrs %q, want bootable %v", n, p.Attrs, spec.Bootable)
					}
				}
				prevEnd = end
			}
			switch tt.kind {
			case MSDOS:
				if len(got.Partitions) != 6 {
					t.Errorf("sfdisk sees %d partitions, want 6", len(got.Partitions))
				}
				extStart, extEnd := sec(4)
				_, end3 := sec(3)
				start5, _ := sec(5)
				if byNum[4].Type != "f" || extStart != end3 || extEnd != size/512*512 || start5-extStart != align {
					t.Errorf("extended partition: type %s [%d, %d), want type f from %d to the end %d, %d bytes before partition 5",
						byNum[4].Type, extStart, extEnd, end3, size/512*512, align)
				}
				// Each EBR sits in the first sector of its logical partition's gap, pointing 4 MiB ahead.
				_, end5 := sec(5)
				for _, ebr := range []int64{extStart, end5} {
					b := readAt(t, path, ebr, 512)
					rel := int64(b[446+8]) | int64(b[446+9])<<8 | int64(b[446+10])<<16 | int64(b[446+11])<<24
					if b[510] != 0x55 || b[511] != 0xaa || rel*512 != align {
						t.Errorf("EBR at byte %d: signature %x, logical partition %d bytes after it, want 55aa and %d", ebr, b[510:512], rel*512, align)
					}
				}
				if header["label"] != "dos" || header["label-id"] != fmt.Sprintf("0x%08x", tab.DiskSignature) || tab.DiskSignature == 0 {
					t.Errorf("sfdisk -d: label %q label-id %q, want dos 0x%08x (non-zero)", header["label"], header["label-id"], tab.DiskSignature)
				}
			case GPT:
				if len(got.Partitions) != 5 {
					t.Errorf("sfdisk sees %d partitions, want 5", len(got.Partitions))
				}
				if header["label"] != "gpt" || !strings.EqualFold(header["label-id"], tab.DiskGUID.String()) {
					t.Errorf("sfdisk -d: label %q label-id %q, want gpt %s", header["label"], header["label-id"], tab.DiskGUID)
				}
				if got.LastLBA != size/512-34 {
					t.Errorf("sfdisk sees last usable LBA %d, want %d (backup GPT at the end)", got.LastLBA, size/512-34)
				}
			}
			// The MBR disk signature is written from the seed in both kinds.
			img := readAt(t, path, 0, 512)
			if sig := uint32(img[440]) | uint32(img[441])<<8 | uint32(img[442])<<16 | uint32(img[443])<<24; sig != tab.DiskSignature || sig == 0 {
				t.Errorf("MBR disk signature %08x, want %08x (non-zero)", sig, tab.DiskSignature)
			}
			judge(t, path, tab)
		})
	}
}

func TestPlanDeterministic(t *testing.T) {
	for _, kind := range []Kind{MSDOS, GPT} {
		t.Run(string(kind), func(t *testing.T) {
			// The balena shape at a small scale, so whole images can be compared byte for byte.
			parts := balenaParts()
			for i := range parts {
				parts[i].Size /= 16
			}
			image := func(seed []byte) []byte {
				_, path, _ := planAndWrite(t, Layout{Kind: kind, Alignment: MiB, Parts: parts, Seed: seed})
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			a, b := image([]byte("fleet-42")), image([]byte("fleet-42"))
			if !bytes.Equal(a, b) {
				t.Error("the same seed gave different images")
			}
			if c := image([]byte("fleet-43")); bytes.Equal(a, c) {
				t.Error("different seeds gave identical images")
			}
			if r1, r2 := image(nil), image(nil); bytes.Equal(r1, r2) {
				t.Error("two random plans gave identical images")
			}
		})
	}
}

func TestPlanTooSmall(t *testing.T) {
	for _, kind := range []Kind{MSDOS, GPT} {
		t.Run(string(kind), func(t *testing.T) {
			l := Layout{Kind: kind, Alignment: 4 * MiB, Parts: balenaParts()}
			min := MinSize(l)
			if min == 0 {
				t.Fatal("MinSize = 0")
			}
			l.TotalSize = min - 10*MiB
			_, err := Plan(l)
			if err == nil || !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "10 MiB short") {
				t.Errorf("Plan with 10 MiB too little = %v, want ErrNoSpace naming 10 MiB", err)
			}
			l.TotalSize = min
			if _, err := Plan(l); err != nil {
				t.Errorf("Plan at MinSize: %v", err)
			}
		})
	}
}

func TestPlanRejects(t *testing.T) {
	tests := []struct {
		name string
		l    Layout
		want string
	}{
		{"no alignment", Layout{Kind: MSDOS, Parts: balenaParts()}, "alignment"},
		{"no parts", Layout{Kind: GPT, Alignment: MiB}, "no partitions"},
		{"zero size", Layout{Kind: MSDOS, Alignment: MiB, Parts: []PartSpec{{Label: "x"}}}, "not positive"},
		{"unknown kind", Layout{Kind: "apm", Alignment: MiB, Parts: balenaParts()}, "unknown kind"},
		{"msdos over 2 TiB", Layout{Kind: MSDOS, Alignment: MiB, Parts: balenaParts(), TotalSize: 3 << 40}, "2 TiB"},
		{"gpt long label", Layout{Kind: GPT, Alignment: MiB, Parts: []PartSpec{{Label: strings.Repeat("a", 40), Size: MiB}}}, "longer than 36"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Plan(tt.l); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Plan = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// readAt reads n bytes at off of a file.
func readAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}
