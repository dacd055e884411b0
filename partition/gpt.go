package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"unicode/utf16"

	"github.com/google/uuid"
)

const (
	gptSignature           = "EFI PART"
	gptRevision            = 0x00010000
	gptHeaderSize          = 92
	gptEntrySize           = 128
	gptEntries             = 128 // entries written; the minimum the UEFI specification asks for
	gptNameUnits           = 36  // UTF-16 code units in a partition name
	maxGPTEntryBytes       = 1 << 20
	attrLegacyBIOSBootable = 1 << 2
)

type gptHeader struct {
	myLBA, altLBA           uint64
	firstUsable, lastUsable uint64
	diskGUID                uuid.UUID
	entriesLBA              uint64
	numEntries, entrySize   uint32
	entriesCRC              uint32
}

// guidBytes converts between uuid.UUID's big-endian form and GPT's mixed-endian on-disk form (the conversion is
// its own inverse).
func guidBytes(b []byte) uuid.UUID {
	var u uuid.UUID
	copy(u[:], b)
	u[0], u[1], u[2], u[3] = u[3], u[2], u[1], u[0]
	u[4], u[5] = u[5], u[4]
	u[6], u[7] = u[7], u[6]
	return u
}

func readGPT(r io.ReaderAt, size int64, ss int) (*Table, layout, error) {
	var l layout
	ssz := int64(ss)
	last := uint64(size/ssz) - 1
	h, entries, err := readGPTHeader(r, size, ssz, 1)
	if err != nil {
		var berr error
		h, entries, berr = readGPTHeader(r, size, ssz, last)
		if berr != nil {
			return nil, l, fmt.Errorf("read gpt: primary: %w; backup: %v", err, berr)
		}
	}
	t := &Table{Kind: GPT, SectorSize: ss, DiskGUID: h.diskGUID}
	// Partitions live between the primary entry array (from sector 2) and the backup one (before the last
	// sector), and inside what the header calls usable.
	arraySectors := (uint64(h.numEntries)*uint64(h.entrySize) + uint64(ssz) - 1) / uint64(ssz)
	lo := max(h.firstUsable, 2+arraySectors)
	hi := min(h.lastUsable+1, last-arraySectors) // exclusive
	if h.lastUsable >= last || hi < lo {
		return nil, l, fmt.Errorf("read gpt: usable sectors %d to %d do not fit the disk", h.firstUsable, h.lastUsable)
	}
	l.usable = [2]int64{int64(lo) * ssz, int64(hi) * ssz}
	for i := 0; i < int(h.numEntries); i++ {
		e := entries[i*int(h.entrySize):]
		typ := guidBytes(e[0:16])
		if typ == uuid.Nil {
			continue
		}
		first, lastLBA := binary.LittleEndian.Uint64(e[32:]), binary.LittleEndian.Uint64(e[40:])
		if lastLBA < first || lastLBA > last {
			return nil, l, fmt.Errorf("read gpt: entry %d: sectors %d to %d do not fit the disk", i+1, first, lastLBA)
		}
		t.Partitions = append(t.Partitions, Partition{
			Number:   i + 1,
			Start:    int64(first) * ssz,
			Size:     int64(lastLBA-first+1) * ssz,
			Name:     decodeName(e[56:128]),
			GPTType:  typ,
			GUID:     guidBytes(e[16:32]),
			Bootable: binary.LittleEndian.Uint64(e[48:])&attrLegacyBIOSBootable != 0,
		})
	}
	return t, l, nil
}

// readGPTHeader reads and verifies the header at lba and its entry array.
func readGPTHeader(r io.ReaderAt, size, ssz int64, lba uint64) (gptHeader, []byte, error) {
	var h gptHeader
	sectors := uint64(size / ssz)
	if lba >= sectors {
		return h, nil, fmt.Errorf("header sector %d is past the end of the disk", lba)
	}
	b := make([]byte, ssz)
	if err := readFull(r, b, int64(lba)*ssz); err != nil {
		return h, nil, fmt.Errorf("header at sector %d: %w", lba, err)
	}
	if string(b[:8]) != gptSignature {
		return h, nil, fmt.Errorf("no gpt header at sector %d", lba)
	}
	hsize := binary.LittleEndian.Uint32(b[12:])
	if hsize < gptHeaderSize || int64(hsize) > ssz {
		return h, nil, fmt.Errorf("header at sector %d: size %d is out of range", lba, hsize)
	}
	want := binary.LittleEndian.Uint32(b[16:])
	hb := append([]byte(nil), b[:hsize]...)
	binary.LittleEndian.PutUint32(hb[16:], 0)
	if got := crc32.ChecksumIEEE(hb); got != want {
		return h, nil, fmt.Errorf("header at sector %d: checksum %08x, want %08x", lba, got, want)
	}
	h = gptHeader{
		myLBA:       binary.LittleEndian.Uint64(b[24:]),
		altLBA:      binary.LittleEndian.Uint64(b[32:]),
		firstUsable: binary.LittleEndian.Uint64(b[40:]),
		lastUsable:  binary.LittleEndian.Uint64(b[48:]),
		diskGUID:    guidBytes(b[56:72]),
		entriesLBA:  binary.LittleEndian.Uint64(b[72:]),
		numEntries:  binary.LittleEndian.Uint32(b[80:]),
		entrySize:   binary.LittleEndian.Uint32(b[84:]),
		entriesCRC:  binary.LittleEndian.Uint32(b[88:]),
	}
	if h.myLBA != lba {
		return h, nil, fmt.Errorf("header at sector %d says it is at sector %d", lba, h.myLBA)
	}
	if h.entrySize < gptEntrySize || h.entrySize%8 != 0 || h.entrySize > maxGPTEntryBytes {
		return h, nil, fmt.Errorf("header at sector %d: entry size %d is out of range", lba, h.entrySize)
	}
	n := uint64(h.numEntries) * uint64(h.entrySize)
	if n > maxGPTEntryBytes {
		return h, nil, fmt.Errorf("header at sector %d: %d entries of %d bytes exceed %d bytes", lba, h.numEntries, h.entrySize, maxGPTEntryBytes)
	}
	if h.entriesLBA >= sectors || n > uint64(size)-h.entriesLBA*uint64(ssz) {
		return h, nil, fmt.Errorf("header at sector %d: entry array at sector %d runs past the end of the disk", lba, h.entriesLBA)
	}
	entries := make([]byte, n)
	if err := readFull(r, entries, int64(h.entriesLBA)*ssz); err != nil {
		return h, nil, fmt.Errorf("entry array at sector %d: %w", h.entriesLBA, err)
	}
	if got := crc32.ChecksumIEEE(entries); got != h.entriesCRC {
		return h, nil, fmt.Errorf("entry array at sector %d: checksum %08x, want %08x", h.entriesLBA, got, h.entriesCRC)
	}
	return h, entries, nil
}

func decodeName(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// gptGeometry returns the sectors of the entry array and the first and last usable LBA of a disk.
func gptGeometry(size, ssz int64) (entrySectors, firstUsable, lastUsable int64, err error) {
	entrySectors = (gptEntries*gptEntrySize + ssz - 1) / ssz
	total := size / ssz
	firstUsable = 2 + entrySectors
	lastUsable = total - 2 - entrySectors
	if lastUsable < firstUsable {
		return 0, 0, 0, fmt.Errorf("disk of %d bytes is too small for a gpt", size)
	}
	return entrySectors, firstUsable, lastUsable, nil
}

// writeGPT writes the backup GPT, then the primary, then the protective MBR.
func writeGPT(w io.WriterAt, size int64, ss int, t *Table) error {
	ssz := int64(ss)
	entrySectors, firstUsable, lastUsable, err := gptGeometry(size, ssz)
	if err != nil {
		return fmt.Errorf("write gpt: %w", err)
	}
	if t.DiskGUID == uuid.Nil {
		return errors.New("write gpt: disk guid is zero")
	}
	if t.Extended != nil {
		return errors.New("write gpt: a gpt has no extended partition")
	}
	total := size / ssz
	entries := make([]byte, gptEntries*gptEntrySize)
	used := map[int]bool{}
	for _, p := range t.Partitions {
		if p.Number < 1 || p.Number > gptEntries {
			return fmt.Errorf("write gpt: partition number %d is outside 1 to %d", p.Number, gptEntries)
		}
		if used[p.Number] {
			return fmt.Errorf("write gpt: partition number %d used twice", p.Number)
		}
		used[p.Number] = true
		if err := checkGeometry(p, ssz, firstUsable*ssz, (lastUsable+1)*ssz); err != nil {
			return fmt.Errorf("write gpt: %w", err)
		}
		if p.GPTType == uuid.Nil {
			return fmt.Errorf("write gpt: partition %d: type guid is zero", p.Number)
		}
		if p.GUID == uuid.Nil {
			return fmt.Errorf("write gpt: partition %d: unique guid is zero", p.Number)
		}
		name := p.Label
		if name == "" {
			name = p.Name
		}
		units := utf16.Encode([]rune(name))
		if len(units) > gptNameUnits {
			return fmt.Errorf("write gpt: partition %d: name %q is longer than %d UTF-16 units", p.Number, name, gptNameUnits)
		}
		e := entries[(p.Number-1)*gptEntrySize:]
		typ, id := guidBytes(p.GPTType[:]), guidBytes(p.GUID[:])
		copy(e[0:16], typ[:])
		copy(e[16:32], id[:])
		binary.LittleEndian.PutUint64(e[32:], uint64(p.Start/ssz))
		binary.LittleEndian.PutUint64(e[40:], uint64(p.End()/ssz-1))
		if p.Bootable {
			binary.LittleEndian.PutUint64(e[48:], attrLegacyBIOSBootable)
		}
		for i, u := range units {
			binary.LittleEndian.PutUint16(e[56+2*i:], u)
		}
	}
	if err := checkOverlap(t.Partitions); err != nil {
		return fmt.Errorf("write gpt: %w", err)
	}
	entriesCRC := crc32.ChecksumIEEE(entries)
	header := func(my, alt, entriesLBA int64) []byte {
		b := make([]byte, ssz)
		copy(b, gptSignature)
		binary.LittleEndian.PutUint32(b[8:], gptRevision)
		binary.LittleEndian.PutUint32(b[12:], gptHeaderSize)
		binary.LittleEndian.PutUint64(b[24:], uint64(my))
		binary.LittleEndian.PutUint64(b[32:], uint64(alt))
		binary.LittleEndian.PutUint64(b[40:], uint64(firstUsable))
		binary.LittleEndian.PutUint64(b[48:], uint64(lastUsable))
		g := guidBytes(t.DiskGUID[:])
		copy(b[56:72], g[:])
		binary.LittleEndian.PutUint64(b[72:], uint64(entriesLBA))
		binary.LittleEndian.PutUint32(b[80:], gptEntries)
		binary.LittleEndian.PutUint32(b[84:], gptEntrySize)
		binary.LittleEndian.PutUint32(b[88:], entriesCRC)
		binary.LittleEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b[:gptHeaderSize]))
		return b
	}
	padded := make([]byte, entrySectors*ssz)
	copy(padded, entries)
	backupEntries := total - 1 - entrySectors
	for _, s := range []struct {
		what string
		b    []byte
		lba  int64
	}{
		{"backup entry array", padded, backupEntries},
		{"backup header", header(total-1, 1, backupEntries), total - 1},
		{"entry array", padded, 2},
		{"header", header(1, total-1, 2), 1},
	} {
		if err := writeFull(w, s.b, s.lba*ssz); err != nil {
			return fmt.Errorf("write gpt %s: %w", s.what, err)
		}
	}

	tail := make([]byte, 512-diskSignatureOffset)
	binary.LittleEndian.PutUint32(tail, t.DiskSignature)
	pe := tail[mbrTableOffset-diskSignatureOffset:]
	pe[1], pe[2], pe[3] = 0x00, 0x02, 0x00
	pe[4] = TypeProtective
	pe[5], pe[6], pe[7] = 0xff, 0xff, 0xff
	binary.LittleEndian.PutUint32(pe[8:], 1)
	binary.LittleEndian.PutUint32(pe[12:], uint32(min(total-1, math.MaxUint32)))
	tail[len(tail)-2], tail[len(tail)-1] = 0x55, 0xaa
	if err := writeFull(w, tail, diskSignatureOffset); err != nil {
		return fmt.Errorf("write protective mbr: %w", err)
	}
	return nil
}
