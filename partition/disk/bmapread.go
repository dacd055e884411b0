package disk

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MaxBmapSize bounds a block map file: far more than the map of any real image (one range per line).
const MaxBmapSize = 64 << 20

// BlockMap is a parsed bmap file (format 1.x or 2.x): the blocks of an image that hold data, with a
// checksum per range.
type BlockMap struct {
	ImageSize    int64
	BlockSize    int64
	BlocksCount  int64
	ChecksumType string // "sha256" or "sha1"
	Ranges       []BmapRange
}

// BmapRange is an inclusive range of blocks with the hex checksum of its bytes (clipped to the image size).
type BmapRange struct {
	First, Last int64
	Checksum    string
}

// Bytes gives the offset and length of the range's bytes in an image of size bytes.
func (r BmapRange) Bytes(bs, size int64) (off, n int64) {
	off = r.First * bs
	return off, min((r.Last+1)*bs, size) - off
}

// MappedBytes is the number of image bytes the map's ranges cover.
func (m *BlockMap) MappedBytes() int64 {
	var n int64
	for _, r := range m.Ranges {
		_, k := r.Bytes(m.BlockSize, m.ImageSize)
		n += k
	}
	return n
}

type bmapXML struct {
	XMLName      xml.Name `xml:"bmap"`
	Version      string   `xml:"version,attr"`
	ImageSize    string   `xml:"ImageSize"`
	BlockSize    string   `xml:"BlockSize"`
	BlocksCount  string   `xml:"BlocksCount"`
	ChecksumType string   `xml:"ChecksumType"`
	FileChecksum string   `xml:"BmapFileChecksum"`
	Ranges       []struct {
		Sum  string `xml:"chksum,attr"`
		Text string `xml:",chardata"`
	} `xml:"BlockMap>Range"`
}

// ParseBmap decodes a block map as bmaptool writes it. It checks what a writer relies on: a known
// checksum type, sizes that agree, ranges in order without overlap and inside the image, and the file's
// own checksum (BmapFileChecksum, format 2.0 and later) when present.
func ParseBmap(b []byte) (*BlockMap, error) {
	if len(b) > MaxBmapSize {
		return nil, fmt.Errorf("block map: larger than %d bytes", MaxBmapSize)
	}
	var x bmapXML
	dec := xml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("block map: %w", err)
	}
	major, _, _ := strings.Cut(x.Version, ".")
	if major != "1" && major != "2" {
		return nil, fmt.Errorf("block map: version %q not supported", x.Version)
	}
	m := &BlockMap{ChecksumType: strings.TrimSpace(x.ChecksumType)}
	var err error
	num := func(name, s string) int64 {
		v, e := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if e != nil || v < 0 {
			if err == nil {
				err = fmt.Errorf("block map: %s %q: not a number", name, strings.TrimSpace(s))
			}
		}
		return v
	}
	m.ImageSize = num("ImageSize", x.ImageSize)
	m.BlockSize = num("BlockSize", x.BlockSize)
	m.BlocksCount = num("BlocksCount", x.BlocksCount)
	if err != nil {
		return nil, err
	}
	sumLen := 0
	switch m.ChecksumType {
	case "sha256":
		sumLen = 64
	case "sha1", "": // format 1.x has no ChecksumType and uses sha1
		m.ChecksumType, sumLen = "sha1", 40
	default:
		return nil, fmt.Errorf("block map: checksum type %q not supported", m.ChecksumType)
	}
	if m.BlockSize <= 0 || m.BlockSize > 1<<30 || m.BlockSize%512 != 0 {
		return nil, fmt.Errorf("block map: block size %d: not a positive multiple of 512", m.BlockSize)
	}
	if m.ImageSize == 0 || m.BlocksCount != (m.ImageSize+m.BlockSize-1)/m.BlockSize {
		return nil, fmt.Errorf("block map: %d blocks of %d bytes do not hold an image of %d bytes", m.BlocksCount, m.BlockSize, m.ImageSize)
	}
	if fs := strings.TrimSpace(x.FileChecksum); fs != "" {
		if err := checkBmapFileSum(b, fs); err != nil {
			return nil, err
		}
	}
	next := int64(0)
	for i, r := range x.Ranges {
		text := strings.TrimSpace(r.Text)
		a, z, found := strings.Cut(text, "-")
		if !found {
			z = a
		}
		first, e1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
		last, e2 := strconv.ParseInt(strings.TrimSpace(z), 10, 64)
		if e1 != nil || e2 != nil || first < 0 || last < first {
			return nil, fmt.Errorf("block map: range %d %q: not a block range", i+1, text)
		}
		if first < next || last >= m.BlocksCount {
			return nil, fmt.Errorf("block map: range %d %q: overlaps the one before or ends past block %d", i+1, text, m.BlocksCount-1)
		}
		sum := strings.ToLower(strings.TrimSpace(r.Sum))
		if _, e := hex.DecodeString(sum); e != nil || len(sum) != sumLen {
			return nil, fmt.Errorf("block map: range %d %q: bad %s checksum %q", i+1, text, m.ChecksumType, r.Sum)
		}
		m.Ranges = append(m.Ranges, BmapRange{First: first, Last: last, Checksum: sum})
		next = last + 1
	}
	return m, nil
}

// checkBmapFileSum checks a bmap file's checksum: the sha256 of the file with the checksum's own digits
// replaced by zeros.
func checkBmapFileSum(b []byte, want string) error {
	if len(want) != bmapChecksumLen {
		return fmt.Errorf("block map: BmapFileChecksum %q: not a sha256", want)
	}
	i := bytes.Index(b, []byte(want))
	if i < 0 {
		return errors.New("block map: BmapFileChecksum not found in the file")
	}
	c := bytes.Clone(b)
	copy(c[i:i+bmapChecksumLen], bytes.Repeat([]byte("0"), bmapChecksumLen))
	got := sha256.Sum256(c)
	if hex.EncodeToString(got[:]) != strings.ToLower(want) {
		return errors.New("block map: the file does not match its BmapFileChecksum (edited or damaged)")
	}
	return nil
}

// ReadBmap reads and parses a block map from r, at most MaxBmapSize bytes.
func ReadBmap(r io.Reader) (*BlockMap, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxBmapSize+1))
	if err != nil {
		return nil, fmt.Errorf("read block map: %w", err)
	}
	return ParseBmap(b)
}
