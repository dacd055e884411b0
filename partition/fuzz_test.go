package partition

import (
	"io"
	"reflect"
	"testing"

	"github.com/google/uuid"
)

// image is a disk image held in memory, for the fuzz target: the codecs take any io.ReaderAt/io.WriterAt.
type image []byte

func (m image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m image) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, io.ErrShortWrite
	}
	return copy(m[off:], p), nil
}

func seedImage(f *testing.F, size int64, tab *Table) image {
	img := make(image, size)
	if err := Write(img, size, tab); err != nil {
		f.Fatalf("seed %s: %v", tab.Kind, err)
	}
	return img
}

// FuzzRead feeds arbitrary images to Read, which must never panic; whatever it reads and Write accepts must
// read back the same.
func FuzzRead(f *testing.F) {
	const k = 1024
	// Small images keep the fuzzer fast.
	msdos := seedImage(f, 16*k, &Table{Kind: MSDOS, DiskSignature: 0x12345678,
		Extended: &Partition{Number: 4, Start: 6 * k, Size: 10 * k},
		Partitions: []Partition{
			{Number: 1, Start: 1 * k, Size: 3 * k, MBRType: TypeFAT16LBA, Bootable: true},
			{Number: 2, Start: 4 * k, Size: 2 * k, MBRType: TypeLinux},
			{Number: 5, Start: 7 * k, Size: 2 * k, MBRType: TypeLinux},
			{Number: 6, Start: 10 * k, Size: 1 * k, MBRType: TypeLinux, Bootable: true},
			{Number: 7, Start: 12 * k, Size: 4 * k, MBRType: TypeLinux},
		}})
	f.Add([]byte(msdos), false)
	gpt := seedImage(f, 40*k, &Table{Kind: GPT, DiskGUID: uuid.MustParse("5b9a3c1e-0d67-4b1e-9b7e-6c2a8e0f4d11"),
		Partitions: []Partition{
			{Number: 1, Start: 17 * k, Size: 2 * k, Label: "resin-boot", GPTType: MicrosoftBasicData, GUID: uuid.MustParse("2b7a0f4c-6a51-4b5e-8f1a-0d6c3e9b7a21"), Bootable: true},
			{Number: 3, Start: 19 * k, Size: 4 * k, Label: "resin-data", GPTType: LinuxFilesystem, GUID: uuid.MustParse("9c1e5d3a-7b2f-4e8d-a6c4-1f0b3d5e7a92")},
		}})
	f.Add([]byte(gpt), false)
	damaged := append(image(nil), gpt...)
	damaged[512+100] ^= 0xff // primary header broken: Read falls back to the backup
	f.Add([]byte(damaged), false)
	gpt4k := seedImage(f, 64*k, &Table{Kind: GPT, SectorSize: 4096, DiskGUID: uuid.MustParse("5b9a3c1e-0d67-4b1e-9b7e-6c2a8e0f4d12"),
		Partitions: []Partition{
			{Number: 1, Start: 24 * k, Size: 8 * k, Label: "data", GPTType: LinuxFilesystem, GUID: uuid.MustParse("9c1e5d3a-7b2f-4e8d-a6c4-1f0b3d5e7a93")},
		}})
	f.Add([]byte(gpt4k), true)
	f.Add([]byte{}, false)

	f.Fuzz(func(t *testing.T, data []byte, bigSectors bool) {
		ss := 512
		if bigSectors {
			ss = 4096
		}
		size := int64(len(data))
		tab, err := Read(image(data), size, ss)
		if err != nil {
			return
		}
		// What Read accepts lies inside the disk with no partition over another or over the table.
		if err := tab.Check(size); err != nil {
			t.Fatalf("Read accepted a table that fails Check: %v", err)
		}
		out := make(image, size)
		if err := Write(out, size, tab); err != nil {
			return // Read accepts tables Write refuses to produce (overlaps, holes in the EBR chain order, ...)
		}
		again, err := Read(out, size, ss)
		if err != nil {
			t.Fatalf("Read of a written table: %v\ntable %+v", err, tab)
		}
		if !reflect.DeepEqual(again, tab) {
			t.Fatalf("Read after Write differs:\n got %+v\nwant %+v", again, tab)
		}
	})
}
