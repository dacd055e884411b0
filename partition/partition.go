// Package partition models msdos and GPT partition tables, reads and writes them, plans the balenaOS layout and
// finds partitions by filesystem label.
package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/google/uuid"
)

// Kind is the partition table format.
type Kind string

const (
	// MSDOS is the classic master boot record table with an optional extended partition.
	MSDOS Kind = "msdos"
	// GPT is the GUID partition table behind a protective MBR.
	GPT Kind = "gpt"
)

// Partition is one partition as the kernel sees it.
type Partition struct {
	Number   int       // as the kernel numbers it: msdos primaries 1-4, logicals from 5; gpt entry index+1
	Start    int64     // bytes from the start of the disk
	Size     int64     // bytes
	Label    string    // filesystem label this partition carries (resin-boot, ...); GPT: also written as the partition name
	Name     string    // GPT partition name as read (empty on msdos)
	MBRType  byte      // msdos partition type: 0x0e FAT16 LBA, 0x0c FAT32 LBA, 0x83 Linux
	GPTType  uuid.UUID // GPT partition type GUID
	GUID     uuid.UUID // GPT unique partition GUID
	Bootable bool      // msdos active flag (0x80); GPT legacy-BIOS-bootable attribute (bit 2)
}

// End is the offset of the first byte after the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

// Table is a partition table. Read leaves Label empty: the table does not know filesystem labels (Locate probes them).
type Table struct {
	Kind          Kind
	SectorSize    int
	DiskSignature uint32      // msdos disk identifier at offset 440 (also written into GPT's protective MBR)
	DiskGUID      uuid.UUID   // gpt
	Partitions    []Partition // data partitions in number order; the msdos extended container is NOT in this list
	Extended      *Partition  // msdos: the extended container (type 0x0f), nil if none
}

// layout is what a reader learns besides the table: where the table's own sectors are.
type layout struct {
	usable [2]int64 // gpt: the byte range partitions may use, from the header and the entry arrays
	ebrs   []int64  // msdos: the byte offset of every extended boot record of the chain
}

// Partition returns the partition numbered n.
func (t *Table) Partition(n int) (Partition, bool) {
	for _, p := range t.Partitions {
		if p.Number == n {
			return p, true
		}
	}
	return Partition{}, false
}

// Well-known partition type GUIDs.
var (
	// LinuxFilesystem is the GPT type of Linux data partitions (ext4).
	LinuxFilesystem = uuid.MustParse("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
	// MicrosoftBasicData is the GPT type of FAT data partitions.
	MicrosoftBasicData = uuid.MustParse("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")
	// EFISystem is the GPT type of the EFI system partition.
	EFISystem = uuid.MustParse("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
)

// MBR partition types hostos uses.
const (
	TypeFAT32LBA    byte = 0x0c
	TypeFAT16LBA    byte = 0x0e
	TypeExtended    byte = 0x05
	TypeExtendedLBA byte = 0x0f
	TypeLinux       byte = 0x83
	TypeProtective  byte = 0xee
)

const (
	mbrSignatureOffset  = 510
	diskSignatureOffset = 440
	mbrTableOffset      = 446
	mbrEntrySize        = 16
)

// Read decodes the partition table of a disk of size bytes with the given logical sector size (0 means 512).
// A protective MBR (type 0xee) makes it read the GPT, falling back to the backup GPT when the primary is damaged.
// A table that decodes but fails Check is refused with an error wrapping ErrInvalidTable: nothing may be
// read or written through it.
func Read(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	t, l, err := read(r, size, sectorSize)
	if err != nil {
		return nil, err
	}
	if err := t.check(size, l); err != nil {
		return nil, fmt.Errorf("read %s table: %w: %w", t.Kind, ErrInvalidTable, err)
	}
	return t, nil
}

// ReadUnchecked decodes a partition table as Read does without checking its geometry, for tools that show
// a damaged table (inspect marks it invalid with Check). Never locate, read or write partitions through it.
func ReadUnchecked(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	t, _, err := read(r, size, sectorSize)
	return t, err
}

func read(r io.ReaderAt, size int64, sectorSize int) (*Table, layout, error) {
	var l layout
	ss, err := checkSectorSize(sectorSize)
	if err != nil {
		return nil, l, err
	}
	if size < int64(ss) {
		return nil, l, fmt.Errorf("read partition table: disk of %d bytes is smaller than one sector", size)
	}
	mbr := make([]byte, ss)
	if err := readFull(r, mbr, 0); err != nil {
		return nil, l, fmt.Errorf("read master boot record: %w", err)
	}
	if mbr[mbrSignatureOffset] != 0x55 || mbr[mbrSignatureOffset+1] != 0xaa {
		return nil, l, errors.New("read partition table: no boot signature in the master boot record")
	}
	for i := 0; i < 4; i++ {
		if mbr[mbrTableOffset+i*mbrEntrySize+4] == TypeProtective {
			t, l, err := readGPT(r, size, ss)
			if err != nil {
				return nil, l, err
			}
			t.DiskSignature = binary.LittleEndian.Uint32(mbr[diskSignatureOffset:])
			return t, l, nil
		}
	}
	return readMSDOS(r, size, ss, mbr)
}

// Write encodes t onto a disk of size bytes: the MBR and EBR chain for msdos, or the protective MBR and the
// primary and backup GPT for gpt. It writes only table sectors (the boot code before offset 440 is kept) and
// rejects tables whose partitions overlap, are unaligned to the sector size or do not fit the disk.
func Write(w io.WriterAt, size int64, t *Table) error {
	if t == nil {
		return errors.New("write partition table: no table")
	}
	ss, err := checkSectorSize(t.SectorSize)
	if err != nil {
		return err
	}
	switch t.Kind {
	case MSDOS:
		return writeMSDOS(w, size, ss, t)
	case GPT:
		return writeGPT(w, size, ss, t)
	default:
		return fmt.Errorf("write partition table: unknown kind %q", t.Kind)
	}
}

func checkSectorSize(ss int) (int, error) {
	if ss == 0 {
		return 512, nil
	}
	if ss < 512 || ss > 65536 || ss&(ss-1) != 0 {
		return 0, fmt.Errorf("sector size %d is not a power of two of at least 512", ss)
	}
	return ss, nil
}

func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func writeFull(w io.WriterAt, p []byte, off int64) error {
	n, err := w.WriteAt(p, off)
	if err == nil && n != len(p) {
		err = io.ErrShortWrite
	}
	return err
}

// checkGeometry verifies that every partition is sector aligned, non-empty and inside [lo, hi).
func checkGeometry(p Partition, ss, lo, hi int64) error {
	switch {
	case p.Size <= 0:
		return fmt.Errorf("partition %d: size %d is not positive", p.Number, p.Size)
	case p.Start%ss != 0 || p.Size%ss != 0:
		return fmt.Errorf("partition %d: start %d or size %d is not a multiple of the %d-byte sector", p.Number, p.Start, p.Size, ss)
	case p.Start < lo:
		return fmt.Errorf("partition %d: starts at byte %d, before the first usable byte %d", p.Number, p.Start, lo)
	case p.Start > hi || p.Size > hi-p.Start:
		return fmt.Errorf("partition %d: ends at byte %d, past the usable end %d", p.Number, p.Start+p.Size, hi)
	}
	return nil
}

// checkOverlap reports the first two partitions that share a byte.
func checkOverlap(parts []Partition) error {
	s := append([]Partition(nil), parts...)
	sort.Slice(s, func(i, j int) bool { return s[i].Start < s[j].Start })
	for i := 1; i < len(s); i++ {
		if s[i].Start < s[i-1].End() {
			return fmt.Errorf("partitions %d and %d overlap", s[i-1].Number, s[i].Number)
		}
	}
	return nil
}

func sortedByNumber(parts []Partition) []Partition {
	s := append([]Partition(nil), parts...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Number < s[j].Number })
	return s
}
