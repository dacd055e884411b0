package partition

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// maxLogical bounds the EBR chain walk so that a looping or endless chain cannot hang Read.
const maxLogical = 256

type mbrEntry struct {
	status  byte
	typ     byte
	start   uint32 // LBA, relative to the table's anchor
	sectors uint32
}

func parseEntry(b []byte) mbrEntry {
	return mbrEntry{
		status:  b[0],
		typ:     b[4],
		start:   binary.LittleEndian.Uint32(b[8:]),
		sectors: binary.LittleEndian.Uint32(b[12:]),
	}
}

func (e mbrEntry) empty() bool { return e.typ == 0 || e.sectors == 0 }

// encodeEntry writes one 16-byte table entry; abs is the absolute LBA of the first sector, for the CHS fields.
func encodeEntry(b []byte, e mbrEntry, abs uint64) {
	b[0] = e.status
	copy(b[1:4], chs(abs))
	b[4] = e.typ
	copy(b[5:8], chs(abs+uint64(e.sectors)-1))
	binary.LittleEndian.PutUint32(b[8:], e.start)
	binary.LittleEndian.PutUint32(b[12:], e.sectors)
}

// chs encodes an LBA as cylinder/head/sector with the customary 255 heads and 63 sectors per track,
// saturating at 1023/254/63 as every modern partitioner does.
func chs(lba uint64) []byte {
	const heads, sectors = 255, 63
	c, h, s := lba/(heads*sectors), (lba/sectors)%heads, lba%sectors+1
	if c > 1023 {
		c, h, s = 1023, 254, 63
	}
	return []byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

func isExtended(typ byte) bool { return typ == TypeExtended || typ == TypeExtendedLBA || typ == 0x85 }

func hasBootSignature(sector []byte) bool {
	return sector[mbrSignatureOffset] == 0x55 && sector[mbrSignatureOffset+1] == 0xaa
}

func readMSDOS(r io.ReaderAt, size int64, ss int, mbr []byte) (*Table, layout, error) {
	var l layout
	ssz := int64(ss)
	t := &Table{Kind: MSDOS, SectorSize: ss, DiskSignature: binary.LittleEndian.Uint32(mbr[diskSignatureOffset:])}
	for i := 0; i < 4; i++ {
		e := parseEntry(mbr[mbrTableOffset+i*mbrEntrySize:])
		if e.empty() {
			continue
		}
		p := Partition{
			Number:   i + 1,
			Start:    int64(e.start) * ssz,
			Size:     int64(e.sectors) * ssz,
			MBRType:  e.typ,
			Bootable: e.status&0x80 != 0,
		}
		if isExtended(e.typ) {
			if t.Extended != nil {
				return nil, l, fmt.Errorf("read msdos table: partitions %d and %d are both extended", t.Extended.Number, p.Number)
			}
			t.Extended = &p
			continue
		}
		t.Partitions = append(t.Partitions, p)
	}
	if t.Extended == nil {
		return t, l, nil
	}
	logicals, ebrs, err := readEBRChain(r, size, ssz, *t.Extended)
	if err != nil {
		return nil, l, err
	}
	t.Partitions = append(t.Partitions, logicals...)
	l.ebrs = ebrs
	return t, l, nil
}

// readEBRChain follows the extended boot records from the start of the extended partition. Like the kernel it
// numbers data entries from 5 in chain order; the link entry is relative to the extended partition's start.
func readEBRChain(r io.ReaderAt, size, ssz int64, ext Partition) ([]Partition, []int64, error) {
	base := uint64(ext.Start / ssz)
	ebr := base
	seen := map[uint64]bool{}
	sector := make([]byte, ssz)
	var out []Partition
	var ebrs []int64
	for i := 0; ; i++ {
		if i == maxLogical {
			return nil, nil, fmt.Errorf("read msdos table: ebr chain is longer than %d records", maxLogical)
		}
		if seen[ebr] {
			return nil, nil, fmt.Errorf("read msdos table: ebr chain loops back to sector %d", ebr)
		}
		seen[ebr] = true
		off := int64(ebr) * ssz
		if ebr > math.MaxInt64/uint64(ssz) || off > size-ssz {
			return nil, nil, fmt.Errorf("read msdos table: ebr at sector %d is past the end of the disk", ebr)
		}
		if err := readFull(r, sector, off); err != nil {
			return nil, nil, fmt.Errorf("read ebr at sector %d: %w", ebr, err)
		}
		if !hasBootSignature(sector) {
			if i == 0 {
				return out, ebrs, nil // an extended partition holding no logical partition yet
			}
			return nil, nil, fmt.Errorf("read msdos table: ebr at sector %d has no boot signature", ebr)
		}
		ebrs = append(ebrs, off)
		var next uint64
		for j := 0; j < 4; j++ {
			e := parseEntry(sector[mbrTableOffset+j*mbrEntrySize:])
			if e.empty() {
				continue
			}
			if isExtended(e.typ) {
				if next == 0 {
					next = base + uint64(e.start)
				}
				continue
			}
			out = append(out, Partition{
				Number:   5 + len(out),
				Start:    int64(ebr+uint64(e.start)) * ssz,
				Size:     int64(e.sectors) * ssz,
				MBRType:  e.typ,
				Bootable: e.status&0x80 != 0,
			})
		}
		if next == 0 {
			return out, ebrs, nil
		}
		ebr = next
	}
}

// writeMSDOS writes the EBR chain first and the MBR last. Each logical partition's EBR goes in the first sector
// of the free space before it: the start of the extended partition for the first, the end of the previous
// logical partition for the others.
func writeMSDOS(w io.WriterAt, size int64, ss int, t *Table) error {
	ssz := int64(ss)
	diskEnd := size / ssz * ssz
	var primaries, logicals []Partition
	used := map[int]bool{}
	for _, p := range sortedByNumber(t.Partitions) {
		if used[p.Number] {
			return fmt.Errorf("write msdos table: partition number %d used twice", p.Number)
		}
		used[p.Number] = true
		switch {
		case p.Number >= 1 && p.Number <= 4:
			primaries = append(primaries, p)
		case p.Number >= 5:
			if p.Number != 5+len(logicals) {
				return fmt.Errorf("write msdos table: logical partition %d follows %d; logical partitions are numbered from 5 without gaps", p.Number, 4+len(logicals))
			}
			logicals = append(logicals, p)
		default:
			return fmt.Errorf("write msdos table: partition number %d is not positive", p.Number)
		}
		if p.MBRType == 0 || isExtended(p.MBRType) || p.MBRType == TypeProtective {
			return fmt.Errorf("write msdos table: partition %d: type 0x%02x cannot hold data", p.Number, p.MBRType)
		}
	}
	if len(logicals) > maxLogical {
		return fmt.Errorf("write msdos table: %d logical partitions, at most %d", len(logicals), maxLogical)
	}
	outer := primaries
	var ext Partition
	if t.Extended != nil {
		ext = *t.Extended
		if ext.Number < 1 || ext.Number > 4 || used[ext.Number] {
			return fmt.Errorf("write msdos table: extended partition number %d is not a free primary slot", ext.Number)
		}
		if ext.MBRType == 0 {
			ext.MBRType = TypeExtendedLBA
		}
		if !isExtended(ext.MBRType) {
			return fmt.Errorf("write msdos table: extended partition type 0x%02x is not an extended type", ext.MBRType)
		}
		outer = append(outer, ext)
	} else if len(logicals) > 0 {
		return fmt.Errorf("write msdos table: logical partitions but no extended partition")
	}
	for _, p := range outer {
		if err := checkGeometry(p, ssz, ssz, diskEnd); err != nil {
			return fmt.Errorf("write msdos table: %w", err)
		}
		if p.Start/ssz > math.MaxUint32 || p.Size/ssz > math.MaxUint32 {
			return fmt.Errorf("write msdos table: partition %d lies beyond the 2^32-sector reach of msdos", p.Number)
		}
	}
	if err := checkOverlap(outer); err != nil {
		return fmt.Errorf("write msdos table: %w", err)
	}

	ebrs := make([]int64, len(logicals)) // byte offset of each logical partition's EBR
	prevEnd := ext.Start
	for i, l := range logicals {
		ebrs[i] = prevEnd
		if err := checkGeometry(l, ssz, prevEnd+ssz, ext.End()); err != nil {
			return fmt.Errorf("write msdos table: logical %w (each needs a free sector before it inside the extended partition, in number order)", err)
		}
		prevEnd = l.End()
	}
	if ext.Size > 0 && len(logicals) == 0 {
		// An empty chain: one EBR without entries, so no stale chain survives.
		sector := make([]byte, ssz)
		sector[mbrSignatureOffset], sector[mbrSignatureOffset+1] = 0x55, 0xaa
		if err := writeFull(w, sector, ext.Start); err != nil {
			return fmt.Errorf("write ebr: %w", err)
		}
	}
	for i, l := range logicals {
		sector := make([]byte, ssz)
		ebr := uint64(ebrs[i] / ssz)
		encodeEntry(sector[mbrTableOffset:], mbrEntry{
			status:  bootFlag(l.Bootable),
			typ:     l.MBRType,
			start:   uint32(uint64(l.Start/ssz) - ebr),
			sectors: uint32(l.Size / ssz),
		}, uint64(l.Start/ssz))
		if i+1 < len(logicals) {
			next := logicals[i+1]
			encodeEntry(sector[mbrTableOffset+mbrEntrySize:], mbrEntry{
				typ:     TypeExtended,
				start:   uint32((ebrs[i+1] - ext.Start) / ssz),
				sectors: uint32((next.End() - ebrs[i+1]) / ssz),
			}, uint64(ebrs[i+1]/ssz))
		}
		sector[mbrSignatureOffset], sector[mbrSignatureOffset+1] = 0x55, 0xaa
		if err := writeFull(w, sector, ebrs[i]); err != nil {
			return fmt.Errorf("write ebr of partition %d: %w", l.Number, err)
		}
	}

	tail := make([]byte, 512-diskSignatureOffset)
	binary.LittleEndian.PutUint32(tail, t.DiskSignature)
	for _, p := range outer {
		encodeEntry(tail[mbrTableOffset-diskSignatureOffset+(p.Number-1)*mbrEntrySize:], mbrEntry{
			status:  bootFlag(p.Bootable),
			typ:     p.MBRType,
			start:   uint32(p.Start / ssz),
			sectors: uint32(p.Size / ssz),
		}, uint64(p.Start/ssz))
	}
	tail[len(tail)-2], tail[len(tail)-1] = 0x55, 0xaa
	if err := writeFull(w, tail, diskSignatureOffset); err != nil {
		return fmt.Errorf("write master boot record: %w", err)
	}
	return nil
}

func bootFlag(b bool) byte {
	if b {
		return 0x80
	}
	return 0
}
