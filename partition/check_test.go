package partition

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/hostos/hostos/partition/disk"
)

const checkDiskSize = 64 * MiB

func msdosFixture() *Table {
	return &Table{Kind: MSDOS, DiskSignature: 0x1234abcd,
		Partitions: []Partition{
			{Number: 1, Start: 1 * MiB, Size: 8 * MiB, MBRType: TypeFAT16LBA, Bootable: true},
			{Number: 2, Start: 9 * MiB, Size: 8 * MiB, MBRType: TypeLinux},
			{Number: 5, Start: 19 * MiB, Size: 8 * MiB, MBRType: TypeLinux},
			{Number: 6, Start: 29 * MiB, Size: 8 * MiB, MBRType: TypeLinux},
		},
		Extended: &Partition{Number: 4, Start: 18 * MiB, Size: checkDiskSize - 18*MiB},
	}
}

func gptFixture() *Table {
	g := func(n byte) uuid.UUID { return uuid.UUID{n, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15} }
	return &Table{Kind: GPT, DiskGUID: g(9), Partitions: []Partition{
		{Number: 1, Start: 1 * MiB, Size: 8 * MiB, Label: "resin-boot", GPTType: MicrosoftBasicData, GUID: g(1)},
		{Number: 2, Start: 9 * MiB, Size: 8 * MiB, Label: "resin-rootA", GPTType: LinuxFilesystem, GUID: g(2)},
		{Number: 3, Start: 17 * MiB, Size: 8 * MiB, Label: "resin-rootB", GPTType: LinuxFilesystem, GUID: g(3)},
	}}
}

// patchMBR sets primary entry n (1-4) of the MBR to start and sectors (LBA).
func patchMBR(t *testing.T, path string, n int, start, sectors uint32) {
	t.Helper()
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, start)
	binary.LittleEndian.PutUint32(b[4:], sectors)
	patch(t, path, int64(mbrTableOffset+(n-1)*mbrEntrySize+8), b)
}

func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// patchGPT sets entry n's first and last LBA in both entry arrays and fixes every checksum, so that only
// the geometry is wrong.
func patchGPT(t *testing.T, path string, n int, first, last uint64) {
	t.Helper()
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	total := uint64(len(img) / 512)
	for _, hdrLBA := range []uint64{1, total - 1} {
		h := img[hdrLBA*512 : hdrLBA*512+512]
		arr := binary.LittleEndian.Uint64(h[72:])
		num, size := binary.LittleEndian.Uint32(h[80:]), binary.LittleEndian.Uint32(h[84:])
		entries := img[arr*512 : arr*512+uint64(num)*uint64(size)]
		e := entries[(n-1)*int(size):]
		binary.LittleEndian.PutUint64(e[32:], first)
		binary.LittleEndian.PutUint64(e[40:], last)
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(entries))
		binary.LittleEndian.PutUint32(h[16:], 0)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:gptHeaderSize]))
	}
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReadRefusesBadGeometry: tables that decode but describe impossible disks are refused by Read with
// ErrInvalidTable, and still shown by ReadUnchecked.
func TestReadRefusesBadGeometry(t *testing.T) {
	const mibSectors = MiB / 512
	for _, tc := range []struct {
		name  string
		tab   func() *Table
		patch func(t *testing.T, path string)
		want  string
	}{
		{"msdos partition over the MBR", msdosFixture, func(t *testing.T, p string) { patchMBR(t, p, 2, 0, 8*mibSectors) },
			"before the first usable byte"},
		{"msdos partitions overlap", msdosFixture, func(t *testing.T, p string) { patchMBR(t, p, 2, 5*mibSectors, 8*mibSectors) },
			"partitions 1 and 2 overlap"},
		{"msdos partition past the end", msdosFixture, func(t *testing.T, p string) {
			patchMBR(t, p, 2, 9*mibSectors, 0xfffffff0)
		}, "past the usable end"},
		{"msdos primary overlaps the extended partition", msdosFixture, func(t *testing.T, p string) {
			patchMBR(t, p, 2, 9*mibSectors, 12*mibSectors)
		}, "overlap"},
		{"msdos logical over its own ebr", msdosFixture, func(t *testing.T, p string) {
			// The first EBR sits at the start of the extended partition; move partition 5 onto it.
			b := make([]byte, 4)
			binary.LittleEndian.PutUint32(b, 0)
			patch(t, p, 18*MiB+mbrTableOffset+8, b)
		}, "partition 5"},
		{"msdos logical past the extended partition", msdosFixture, func(t *testing.T, p string) {
			b := make([]byte, 4)
			binary.LittleEndian.PutUint32(b, 200*mibSectors)
			patch(t, p, 27*MiB+mbrTableOffset+12, b) // partition 6's EBR follows partition 5
		}, "partition 6"},
		{"gpt partition over the entry array", gptFixture, func(t *testing.T, p string) { patchGPT(t, p, 1, 2, 2*mibSectors) },
			"before the first usable byte"},
		{"gpt partition over the backup gpt", gptFixture, func(t *testing.T, p string) {
			patchGPT(t, p, 3, 17*mibSectors, checkDiskSize/512-2)
		}, "past the usable end"},
		{"gpt partitions overlap", gptFixture, func(t *testing.T, p string) { patchGPT(t, p, 3, 12*mibSectors, 20*mibSectors) },
			"partitions 2 and 3 overlap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeImage(t, checkDiskSize, tc.tab())
			tc.patch(t, path)
			d, err := disk.Open(path, false)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			_, err = Read(d, d.Size(), 0)
			if !errors.Is(err, ErrInvalidTable) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read: %v, want ErrInvalidTable mentioning %q", err, tc.want)
			}
			raw, err := ReadUnchecked(d, d.Size(), 0)
			if err != nil {
				t.Fatalf("ReadUnchecked: %v", err)
			}
			if err := raw.Check(d.Size()); !errors.Is(err, ErrInvalidTable) {
				t.Errorf("Check of the unchecked table: %v, want ErrInvalidTable", err)
			}
		})
	}
}

// TestCheckAcceptsWrittenTables: what Write writes passes Check, both as read and as built.
func TestCheckAcceptsWrittenTables(t *testing.T) {
	for _, tab := range []*Table{msdosFixture(), gptFixture()} {
		path := writeImage(t, checkDiskSize, tab)
		got := readImage(t, path, 0)
		if err := got.Check(checkDiskSize); err != nil {
			t.Errorf("%s: Check of the table read: %v", tab.Kind, err)
		}
		if err := tab.Check(checkDiskSize); err != nil {
			t.Errorf("%s: Check of the table built: %v", tab.Kind, err)
		}
	}
}
