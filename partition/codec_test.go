package partition

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/hostos/hostos/partition/disk"
)

// writeImage writes t to a new sparse image of size bytes and returns its path.
func writeImage(t *testing.T, size int64, tab *Table) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	d, err := disk.Create(path, size)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := Write(d, size, tab); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return path
}

func readImage(t *testing.T, path string, sectorSize int) *Table {
	t.Helper()
	d, err := disk.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got, err := Read(d, d.Size(), sectorSize)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return got
}

// asRead is what Read should return for a written table: no filesystem labels, GPT names from labels.
func asRead(tab *Table) *Table {
	want := *tab
	if want.SectorSize == 0 {
		want.SectorSize = 512
	}
	want.Partitions = sortedByNumber(tab.Partitions)
	for i := range want.Partitions {
		p := &want.Partitions[i]
		if tab.Kind == GPT && p.Label != "" {
			p.Name = p.Label
		}
		p.Label = ""
	}
	if tab.Extended != nil {
		e := *tab.Extended
		if e.MBRType == 0 {
			e.MBRType = TypeExtendedLBA
		}
		want.Extended = &e
	}
	return &want
}

// judge compares the table sfdisk reads from path with want.
func judge(t *testing.T, path string, want *Table) {
	t.Helper()
	if want.SectorSize != 512 {
		t.Logf("sfdisk 2.38 reads image files with 512-byte sectors only; %d-byte table not judged by sfdisk", want.SectorSize)
		return
	}
	got := newSfdisk(t, path, want.SectorSize).JSON()
	ss := int64(want.SectorSize)
	wantParts := map[int]Partition{}
	for _, p := range want.Partitions {
		wantParts[p.Number] = p
	}
	switch want.Kind {
	case MSDOS:
		if got.Label != "dos" || got.ID != fmt.Sprintf("0x%08x", want.DiskSignature) {
			t.Errorf("sfdisk sees label %q id %q, want dos 0x%08x", got.Label, got.ID, want.DiskSignature)
		}
		if want.Extended != nil {
			wantParts[want.Extended.Number] = *want.Extended
		}
	case GPT:
		if got.Label != "gpt" || !strings.EqualFold(got.ID, want.DiskGUID.String()) {
			t.Errorf("sfdisk sees label %q id %q, want gpt %s", got.Label, got.ID, want.DiskGUID)
		}
	}
	if len(got.Partitions) != len(wantParts) {
		t.Errorf("sfdisk sees %d partitions, want %d: %+v", len(got.Partitions), len(wantParts), got.Partitions)
	}
	for _, g := range got.Partitions {
		n := g.number(path)
		w, ok := wantParts[n]
		if !ok {
			t.Errorf("sfdisk sees unexpected partition %d", n)
			continue
		}
		if g.Start*ss != w.Start || g.Size*ss != w.Size {
			t.Errorf("partition %d: sfdisk sees start %d size %d sectors, want %d, %d", n, g.Start, g.Size, w.Start/ss, w.Size/ss)
		}
		switch want.Kind {
		case MSDOS:
			if g.Type != fmt.Sprintf("%x", w.MBRType) || g.Bootable != w.Bootable {
				t.Errorf("partition %d: sfdisk sees type %s bootable %v, want %x %v", n, g.Type, g.Bootable, w.MBRType, w.Bootable)
			}
		case GPT:
			name := w.Label
			if name == "" {
				name = w.Name
			}
			if !strings.EqualFold(g.Type, w.GPTType.String()) || !strings.EqualFold(g.UUID, w.GUID.String()) || g.Name != name {
				t.Errorf("partition %d: sfdisk sees type %s uuid %s name %q, want %s %s %q", n, g.Type, g.UUID, g.Name, w.GPTType, w.GUID, name)
			}
			if strings.Contains(g.Attrs, "LegacyBIOSBootable") != w.Bootable {
				t.Errorf("partition %d: sfdisk sees attrs %q, want bootable %v", n, g.Attrs, w.Bootable)
			}
		}
	}
	if _, stderr := newSfdisk(t, path, want.SectorSize).Dump(); stderr != "" {
		t.Errorf("sfdisk -d complains: %s", stderr)
	}
}

func TestRoundTrip(t *testing.T) {
	const m = MiB
	g := func(s string) uuid.UUID { return uuid.NewSHA1(uuid.NameSpaceOID, []byte(s)) }
	tests := []struct {
		name string
		size int64
		tab  *Table
	}{
		{"msdos primaries", 64 * m, &Table{Kind: MSDOS, DiskSignature: 0xdeadbeef, Partitions: []Partition{
			{Number: 1, Start: 1 * m, Size: 8 * m, MBRType: TypeFAT32LBA, Bootable: true},
			{Number: 2, Start: 9 * m, Size: 20 * m, MBRType: TypeLinux},
			{Number: 4, Start: 40 * m, Size: 24 * m, MBRType: TypeLinux},
		}}},
		{"msdos extended and logicals", 128 * m, &Table{Kind: MSDOS, DiskSignature: 0x01020304,
			Extended: &Partition{Number: 4, Start: 64 * m, Size: 64 * m, MBRType: TypeExtendedLBA},
			Partitions: []Partition{
				{Number: 1, Start: 4 * m, Size: 20 * m, MBRType: TypeFAT16LBA, Bootable: true},
				{Number: 2, Start: 24 * m, Size: 20 * m, MBRType: TypeLinux},
				{Number: 3, Start: 44 * m, Size: 20 * m, MBRType: TypeLinux},
				{Number: 5, Start: 68 * m, Size: 8 * m, MBRType: TypeLinux},
				{Number: 6, Start: 80 * m, Size: 8 * m, MBRType: TypeLinux, Bootable: true},
				{Number: 7, Start: 88*m + 512, Size: 40*m - 512, MBRType: 0x82},
			}}},
		{"msdos empty extended", 32 * m, &Table{Kind: MSDOS, DiskSignature: 7,
			Extended:   &Partition{Number: 2, Start: 16 * m, Size: 16 * m},
			Partitions: []Partition{{Number: 1, Start: 1 * m, Size: 15 * m, MBRType: TypeLinux}}}},
		{"msdos 4096-byte sectors", 64 * m, &Table{Kind: MSDOS, SectorSize: 4096, DiskSignature: 0xcafe,
			Extended: &Partition{Number: 3, Start: 32 * m, Size: 32 * m, MBRType: TypeExtended},
			Partitions: []Partition{
				{Number: 1, Start: 1 * m, Size: 31 * m, MBRType: TypeLinux},
				{Number: 5, Start: 33 * m, Size: 31 * m, MBRType: TypeLinux},
			}}},
		{"gpt", 64 * m, &Table{Kind: GPT, DiskSignature: 0x11223344, DiskGUID: g("disk"), Partitions: []Partition{
			{Number: 1, Start: 1 * m, Size: 8 * m, Label: "resin-boot", GPTType: MicrosoftBasicData, GUID: g("1"), Bootable: true},
			{Number: 2, Start: 9 * m, Size: 20 * m, Name: "named only", GPTType: LinuxFilesystem, GUID: g("2")},
			{Number: 7, Start: 30 * m, Size: 30 * m, Label: "résumé-ünïcode-36-units-long-exactly", GPTType: EFISystem, GUID: g("7")},
		}}},
		{"gpt 4096-byte sectors", 64 * m, &Table{Kind: GPT, SectorSize: 4096, DiskGUID: g("disk4k"), Partitions: []Partition{
			{Number: 1, Start: 1 * m, Size: 62 * m, Label: "data", GPTType: LinuxFilesystem, GUID: g("a")},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeImage(t, tt.size, tt.tab)
			want := asRead(tt.tab)
			got := readImage(t, path, want.SectorSize)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Read after Write:\n got %+v %+v\nwant %+v %+v", got, got.Extended, want, want.Extended)
			}
			judge(t, path, want)
		})
	}
}

func TestWriteRejects(t *testing.T) {
	const m = MiB
	tests := []struct {
		name string
		tab  *Table
		want string
	}{
		{"overlap", &Table{Kind: MSDOS, Partitions: []Partition{
			{Number: 1, Start: 1 * m, Size: 8 * m, MBRType: TypeLinux},
			{Number: 2, Start: 8 * m, Size: 8 * m, MBRType: TypeLinux},
		}}, "overlap"},
		{"past the end", &Table{Kind: MSDOS, Partitions: []Partition{{Number: 1, Start: 1 * m, Size: 64 * m, MBRType: TypeLinux}}}, "past the usable end"},
		{"unaligned", &Table{Kind: MSDOS, Partitions: []Partition{{Number: 1, Start: 1*m + 1, Size: 8 * m, MBRType: TypeLinux}}}, "multiple"},
		{"logical without extended", &Table{Kind: MSDOS, Partitions: []Partition{{Number: 5, Start: 1 * m, Size: 8 * m, MBRType: TypeLinux}}}, "no extended"},
		{"logical gap in numbers", &Table{Kind: MSDOS, Extended: &Partition{Number: 4, Start: 1 * m, Size: 30 * m},
			Partitions: []Partition{{Number: 6, Start: 2 * m, Size: 8 * m, MBRType: TypeLinux}}}, "without gaps"},
		{"logical with no room for its ebr", &Table{Kind: MSDOS, Extended: &Partition{Number: 4, Start: 1 * m, Size: 30 * m},
			Partitions: []Partition{{Number: 5, Start: 1 * m, Size: 8 * m, MBRType: TypeLinux}}}, "free sector"},
		{"gpt past the backup", &Table{Kind: GPT, DiskGUID: uuid.New(), Partitions: []Partition{
			{Number: 1, Start: 1 * m, Size: 63 * m, GPTType: LinuxFilesystem, GUID: uuid.New()},
		}}, "past the usable end"},
		{"gpt zero guid", &Table{Kind: GPT, DiskGUID: uuid.New(), Partitions: []Partition{
			{Number: 1, Start: 1 * m, Size: 8 * m, GPTType: LinuxFilesystem},
		}}, "unique guid"},
		{"gpt long name", &Table{Kind: GPT, DiskGUID: uuid.New(), Partitions: []Partition{
			{Number: 1, Start: 1 * m, Size: 8 * m, GPTType: LinuxFilesystem, GUID: uuid.New(), Label: strings.Repeat("x", 37)},
		}}, "longer than 36"},
		{"unknown kind", &Table{Kind: "apm"}, "unknown kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := disk.Create(filepath.Join(t.TempDir(), "disk.img"), 64*m)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			err = Write(d, d.Size(), tt.tab)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Write = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestReadSfdisk reads tables that sfdisk wrote from a script and compares them with what sfdisk reports.
func TestReadSfdisk(t *testing.T) {
	tests := []struct {
		name       string
		sectorSize int
		script     string
		kind       Kind
		logicals   int
	}{
		{"msdos extended and logicals", 512, `label: dos
label-id: 0x1234abcd
start=8192, size=81920, type=e, bootable
start=90112, size=20480, type=83
start=110592, size=8192, type=83
start=118784, size=+, type=5
start=122880, size=8192, type=83
start=135168, size=8192, type=83, bootable
start=147456, size=16384, type=c
`, MSDOS, 3},
		{"gpt", 512, `label: gpt
label-id: 5B9A3C1E-0D67-4B1E-9B7E-6C2A8E0F4D11
start=2048, size=81920, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="resin-boot", attrs="LegacyBIOSBootable"
start=83968, size=20480, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="resin-rootA"
start=104448, size=20480, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="resin-rootB"
start=124928, size=+, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="resin-data"
`, GPT, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "disk.img")
			d, err := disk.Create(path, 256*MiB)
			if err != nil {
				t.Fatal(err)
			}
			d.Close()
			sf := newSfdisk(t, path, tt.sectorSize)
			sf.Apply(tt.script)
			got := readImage(t, path, tt.sectorSize)
			if got.Kind != tt.kind {
				t.Fatalf("Read: kind %q, want %q", got.Kind, tt.kind)
			}
			logicals := 0
			for _, p := range got.Partitions {
				if p.Number >= 5 && tt.kind == MSDOS {
					logicals++
				}
			}
			if logicals != tt.logicals {
				t.Errorf("Read found %d logical partitions, want %d", logicals, tt.logicals)
			}
			judge(t, path, got)
		})
	}
}

// TestReadFdisk4096 reads a GPT that fdisk wrote with 4096-byte sectors; the expected partitions are the ones
// the commands asked for.
func TestReadFdisk4096(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	d, err := disk.Create(path, 256*MiB)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	want := []Partition{
		{Number: 1, Start: 256 * 4096, Size: 2560 * 4096, Name: "boot", GPTType: MicrosoftBasicData},
		{Number: 2, Start: 2816 * 4096, Size: 60000 * 4096, Name: "root", GPTType: LinuxFilesystem},
	}
	var cmds strings.Builder
	cmds.WriteString("g\n")
	for _, p := range want {
		fmt.Fprintf(&cmds, "n\n%d\n%d\n+%d\nt\n", p.Number, p.Start/4096, p.Size/4096-1)
		if p.Number > 1 {
			fmt.Fprintf(&cmds, "%d\n", p.Number)
		}
		fmt.Fprintf(&cmds, "%s\nx\nn\n", p.GPTType)
		if p.Number > 1 { // with one partition fdisk does not ask which
			fmt.Fprintf(&cmds, "%d\n", p.Number)
		}
		fmt.Fprintf(&cmds, "%s\nr\n", p.Name)
	}
	cmds.WriteString("w\n")
	fdiskCommands(t, path, 4096, cmds.String())
	got := readImage(t, path, 4096)
	if got.Kind != GPT || got.SectorSize != 4096 || got.DiskGUID == uuid.Nil {
		t.Fatalf("Read: kind %q sector size %d disk guid %s", got.Kind, got.SectorSize, got.DiskGUID)
	}
	if len(got.Partitions) != len(want) {
		t.Fatalf("Read found %d partitions, want %d", len(got.Partitions), len(want))
	}
	for i, g := range got.Partitions {
		w := want[i]
		if g.Number != w.Number || g.Start != w.Start || g.Size != w.Size || g.Name != w.Name || g.GPTType != w.GPTType || g.GUID == uuid.Nil {
			t.Errorf("partition %d: got %+v, want %+v", i+1, g, w)
		}
	}
}

// TestReadDamaged reads images damaged in ways no tool produces on purpose.
func TestReadDamaged(t *testing.T) {
	const m = MiB
	msdos := &Table{Kind: MSDOS, DiskSignature: 1, Extended: &Partition{Number: 4, Start: 8 * m, Size: 24 * m},
		Partitions: []Partition{
			{Number: 1, Start: 1 * m, Size: 7 * m, MBRType: TypeLinux},
			{Number: 5, Start: 9 * m, Size: 7 * m, MBRType: TypeLinux},
			{Number: 6, Start: 17 * m, Size: 7 * m, MBRType: TypeLinux},
		}}
	gpt := &Table{Kind: GPT, DiskGUID: uuid.New(), Partitions: []Partition{
		{Number: 1, Start: 1 * m, Size: 7 * m, GPTType: LinuxFilesystem, GUID: uuid.New(), Label: "a"},
	}}
	tests := []struct {
		name   string
		tab    *Table
		damage func(t *testing.T, path string)
		want   string // "" means Read succeeds and returns the written table
	}{
		{"no boot signature", msdos, func(t *testing.T, path string) { overwrite(t, path, 510, "\x00\x00") }, "no boot signature"},
		{"ebr chain loop", msdos, func(t *testing.T, path string) {
			// The second EBR (at 16 MiB) links back to the first, at offset 0 of the extended partition.
			overwrite(t, path, 16*m+446+16+4, "\x05\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00")
		}, "loops back"},
		{"ebr past the end", msdos, func(t *testing.T, path string) {
			overwrite(t, path, 8*m+446+16+8, "\xff\xff\xff\x0f")
		}, "past the end"},
		{"second ebr without signature", msdos, func(t *testing.T, path string) { overwrite(t, path, 16*m+510, "\x00\x00") }, "no boot signature"},
		{"primary gpt header damaged", gpt, func(t *testing.T, path string) { overwrite(t, path, 512+60, "XXXX") }, ""},
		{"primary gpt entries damaged", gpt, func(t *testing.T, path string) { overwrite(t, path, 1024+56, "XX") }, ""},
		{"both gpt headers damaged", gpt, func(t *testing.T, path string) {
			overwrite(t, path, 512+60, "XXXX")
			overwrite(t, path, 32*m-512+60, "XXXX")
		}, "checksum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeImage(t, 32*m, tt.tab)
			tt.damage(t, path)
			d, err := disk.Open(path, false)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			got, err := Read(d, d.Size(), 512)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Read = %v, want an error containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if want := asRead(tt.tab); !reflect.DeepEqual(got, want) {
				t.Errorf("Read:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// overwrite writes s at off of image.
func overwrite(t *testing.T, image string, off int64, s string) {
	t.Helper()
	d, err := disk.Open(image, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
}
