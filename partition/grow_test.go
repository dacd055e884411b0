package partition

import (
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/hostos/hostos/partition/disk"
)

// TestGrow grows the last partition of planned balenaOS layouts (msdos with logicals, GPT) on a disk made
// larger: sfdisk reads the grown layout, the codec reads back what Grow returned, and the bytes of the
// ungrown table are unchanged except the grown entries.
func TestGrow(t *testing.T) {
	const grow = 64 * MiB
	for _, kind := range []Kind{MSDOS, GPT} {
		t.Run(string(kind), func(t *testing.T) {
			tab, img, size := planAndWrite(t, Layout{Kind: kind, Alignment: 4 * MiB, Parts: balenaParts(), Seed: []byte("grow")})
			data := tab.Partitions[len(tab.Partitions)-1]
			newSize := size + grow
			g, err := Grow(asRead(tab), newSize, data.Number, data.End()+grow)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(img, newSize); err != nil {
				t.Fatal(err)
			}
			d, err := disk.Open(img, true)
			if err != nil {
				t.Fatal(err)
			}
			if err := Write(d, newSize, g); err != nil {
				t.Fatal(err)
			}
			d.Close()
			got := readImage(t, img, 512)
			if !reflect.DeepEqual(got, asRead(g)) {
				t.Errorf("read back\n%+v\nwant\n%+v", got, asRead(g))
			}
			p, _ := got.Partition(data.Number)
			if p.Start != data.Start || p.Size != data.Size+grow {
				t.Errorf("grown partition %+v, want start %d size %d", p, data.Start, data.Size+grow)
			}
			if kind == MSDOS && got.Extended.End() != p.End() {
				t.Errorf("extended partition ends at %d, data at %d", got.Extended.End(), p.End())
			}
			judge(t, img, g)
			sf := newSfdisk(t, img, 512).JSON()
			if kind == GPT && sf.LastLBA != newSize/512-34 {
				t.Errorf("sfdisk sees last usable LBA %d, want %d (backup gpt at the new end)", sf.LastLBA, newSize/512-34)
			}
		})
	}
}

func TestGrowRefuses(t *testing.T) {
	tab := asRead(mustPlan(t, Layout{Kind: MSDOS, Alignment: 4 * MiB, Parts: balenaParts(), Seed: []byte("grow")}))
	size := MinSize(Layout{Kind: MSDOS, Alignment: 4 * MiB, Parts: balenaParts()})
	boot := tab.Partitions[0]
	if _, err := Grow(tab, size, boot.Number, boot.End()+4*MiB); !errors.Is(err, ErrNotLast) {
		t.Errorf("growing the boot partition: %v, want ErrNotLast", err)
	}
	data := tab.Partitions[len(tab.Partitions)-1]
	if _, err := Grow(tab, size, data.Number, data.End()+4*MiB); !errors.Is(err, ErrInvalidTable) {
		t.Errorf("growing past the disk's end: %v, want ErrInvalidTable", err)
	}
	if _, err := Grow(tab, size, data.Number, data.End()-4*MiB); err == nil {
		t.Error("shrinking succeeded")
	}
	if _, err := Grow(tab, size, 9, data.End()); err == nil {
		t.Error("growing a missing partition succeeded")
	}
}

func mustPlan(t *testing.T, l Layout) *Table {
	t.Helper()
	tab, err := Plan(l)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}
