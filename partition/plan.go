package partition

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"

	"github.com/google/uuid"
)

// ErrNoSpace means a layout does not fit the disk size asked for.
var ErrNoSpace = errors.New("not enough space")

// PartSpec describes one partition of a layout. A zero MBRType means 0x0e (FAT16 LBA) for the first partition
// and 0x83 (Linux) for the others; a zero GPTType means Microsoft basic data for a FAT partition (by MBRType, or
// the first partition when MBRType is zero) and Linux filesystem for the others.
type PartSpec struct {
	Label    string
	Size     int64
	MBRType  byte
	GPTType  uuid.UUID
	Bootable bool
}

// Layout is a balenaOS disk layout to plan.
type Layout struct {
	Kind      Kind
	Alignment int64      // bytes, e.g. 4 MiB; also the reserved space before partition 1
	Parts     []PartSpec // in order: boot, rootA, rootB, state, data
	TotalSize int64      // 0 = smallest that fits; otherwise must be >= that, and the LAST partition grows to fill
	Seed      []byte     // derive DiskSignature, DiskGUID and partition GUIDs from this deterministically; nil = random
}

const planSectorSize = 512

// MiB is 2^20 bytes.
const MiB = 1 << 20

// Plan lays out l on a disk of 512-byte sectors. Sizes are rounded up to the alignment. On msdos, up to four
// parts are primary; with more, parts 1-3 are primary, partition 4 is an extended partition running to the end
// of the disk and the rest are logical partitions 5, 6, ..., each after its own Alignment-sized gap that holds
// its EBR. On gpt, part i is partition i, named after its label, and the last partition ends before the backup
// GPT. A TotalSize below MinSize fails with ErrNoSpace, naming the shortfall in MiB.
func Plan(l Layout) (*Table, error) {
	t, end, err := plan(l)
	if err != nil {
		return nil, err
	}
	size := end
	if l.TotalSize != 0 {
		if l.TotalSize < end {
			return nil, fmt.Errorf("plan %s layout: disk of %s is %s short of the %s the layout needs: %w",
				l.Kind, mib(l.TotalSize), mib(end-l.TotalSize), mib(end), ErrNoSpace)
		}
		size = l.TotalSize / planSectorSize * planSectorSize
		if l.Kind == MSDOS && size/planSectorSize > 1<<32-1 {
			return nil, fmt.Errorf("plan msdos layout: disk of %s exceeds the 2 TiB msdos limit", mib(size))
		}
	}
	last := &t.Partitions[len(t.Partitions)-1]
	switch l.Kind {
	case MSDOS:
		last.Size = alignDown(size, l.Alignment) - last.Start
		if t.Extended != nil {
			t.Extended.Size = size - t.Extended.Start
		}
	case GPT:
		_, _, lastUsable, err := gptGeometry(size, planSectorSize)
		if err != nil {
			return nil, fmt.Errorf("plan gpt layout: %w", err)
		}
		last.Size = alignDown((lastUsable+1)*planSectorSize, l.Alignment) - last.Start
	}
	return t, nil
}

// MinSize is the smallest disk in bytes that holds l, a multiple of the alignment, or 0 when l is invalid.
func MinSize(l Layout) int64 {
	_, end, err := plan(l)
	if err != nil {
		return 0
	}
	return end
}

// plan places the partitions at their minimum sizes and returns the table and the smallest disk size.
func plan(l Layout) (*Table, int64, error) {
	a := l.Alignment
	if a <= 0 || a%planSectorSize != 0 {
		return nil, 0, fmt.Errorf("plan layout: alignment %d is not a positive multiple of %d bytes", a, planSectorSize)
	}
	if len(l.Parts) == 0 {
		return nil, 0, errors.New("plan layout: no partitions")
	}
	if l.TotalSize < 0 {
		return nil, 0, fmt.Errorf("plan layout: total size %d is negative", l.TotalSize)
	}
	seed := l.Seed
	if seed == nil {
		seed = make([]byte, 32)
		if _, err := rand.Read(seed); err != nil {
			return nil, 0, fmt.Errorf("plan layout: random seed: %w", err)
		}
	}
	t := &Table{Kind: l.Kind, SectorSize: planSectorSize, DiskSignature: diskSignature(seed)}
	parts := make([]Partition, len(l.Parts))
	for i, s := range l.Parts {
		if s.Size <= 0 {
			return nil, 0, fmt.Errorf("plan layout: partition %q: size %d is not positive", s.Label, s.Size)
		}
		if s.Size > (1<<62)-a {
			return nil, 0, fmt.Errorf("plan layout: partition %q: size %d is too large", s.Label, s.Size)
		}
		typ := s.MBRType
		if typ == 0 {
			typ = TypeLinux
			if i == 0 {
				typ = TypeFAT16LBA
			}
		}
		parts[i] = Partition{Size: alignUp(s.Size, a), Label: s.Label, MBRType: typ, Bootable: s.Bootable}
	}
	var end int64
	switch l.Kind {
	case MSDOS:
		pos := a
		for i := range parts {
			if len(parts) > 4 && i == 3 {
				t.Extended = &Partition{Number: 4, Start: pos, MBRType: TypeExtendedLBA}
			}
			if t.Extended != nil {
				pos += a // the gap holding this logical partition's EBR
				parts[i].Number = 5 + i - 3
			} else {
				parts[i].Number = i + 1
			}
			parts[i].Start = pos
			pos += parts[i].Size
			if pos > (1<<62)-a {
				return nil, 0, errors.New("plan msdos layout: partitions are too large")
			}
		}
		end = pos
		if end/planSectorSize > 1<<32-1 {
			return nil, 0, fmt.Errorf("plan msdos layout: %s exceeds the 2 TiB msdos limit", mib(end))
		}
		if t.Extended != nil {
			t.Extended.Size = end - t.Extended.Start // to the end of the disk
		}
	case GPT:
		if len(parts) > gptEntries {
			return nil, 0, fmt.Errorf("plan gpt layout: %d partitions, at most %d", len(parts), gptEntries)
		}
		entrySectors := int64((gptEntries*gptEntrySize + planSectorSize - 1) / planSectorSize)
		pos := alignUp((2+entrySectors)*planSectorSize, a)
		t.DiskGUID = deriveUUID(seed, "disk")
		for i := range parts {
			p := &parts[i]
			p.Number = i + 1
			p.Start = pos
			p.Name = p.Label
			if n := len(utf16.Encode([]rune(p.Label))); n > gptNameUnits {
				return nil, 0, fmt.Errorf("plan gpt layout: label %q is longer than %d UTF-16 units", p.Label, gptNameUnits)
			}
			p.GPTType = l.Parts[i].GPTType
			if p.GPTType == uuid.Nil {
				p.GPTType = LinuxFilesystem
				if isFAT(l.Parts[i].MBRType) || (l.Parts[i].MBRType == 0 && i == 0) {
					p.GPTType = MicrosoftBasicData
				}
			}
			p.GUID = deriveUUID(seed, "partition "+strconv.Itoa(p.Number))
			p.MBRType = 0
			pos += p.Size
			if pos > (1<<62)-a {
				return nil, 0, errors.New("plan gpt layout: partitions are too large")
			}
		}
		// Room for the backup entry array and header, rounded up so the disk ends on a boundary too.
		end = alignUp(pos+(1+entrySectors)*planSectorSize, a)
	default:
		return nil, 0, fmt.Errorf("plan layout: unknown kind %q", l.Kind)
	}
	t.Partitions = parts
	return t, end, nil
}

func isFAT(typ byte) bool {
	switch typ {
	case 0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e, 0xef:
		return true
	}
	return false
}

// derive hashes the seed under a purpose, so every identifier comes from its own stream.
func derive(seed []byte, purpose string) [32]byte {
	h := sha256.New()
	h.Write([]byte("hostos partition\x00" + purpose + "\x00"))
	h.Write(seed)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// deriveUUID returns a version 4 (random) UUID drawn from the seed.
func deriveUUID(seed []byte, purpose string) uuid.UUID {
	d := derive(seed, purpose)
	var u uuid.UUID
	copy(u[:], d[:16])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// diskSignature returns a non-zero msdos disk identifier drawn from the seed.
func diskSignature(seed []byte) uint32 {
	d := derive(seed, "disk signature")
	if s := binary.LittleEndian.Uint32(d[:]); s != 0 {
		return s
	}
	return 1
}

func alignUp(n, a int64) int64   { return (n + a - 1) / a * a }
func alignDown(n, a int64) int64 { return n / a * a }

// mib formats a byte count in MiB, rounded up to two decimals, with decimals only when it is not whole.
func mib(n int64) string {
	return strconv.FormatFloat(math.Ceil(float64(n)*100/MiB)/100, 'f', -1, 64) + " MiB"
}
