//go:build unix

package ext4

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hostos/hostos/rootfs/tree"
	"github.com/hostos/hostos/tests/testtool"
)

// manyEntries adds directories large enough for hashed (htree) indexes, created in a shuffled order.
func manyEntries() []entry {
	es := rootfsEntries()
	es = append(es, dir("big/", 0o755, 0, 0))
	for i := 0; i < 600; i++ {
		es = append(es, file(fmt.Sprintf("big/f%03d-%x", (i*7919)%600, uint64(i)*2654435761), 0o644, 0, 0, fmt.Sprint(i)))
	}
	return es
}

func TestReproducible(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs", "e2fsck")
	ctx := context.Background()
	d := t.TempDir()
	src := filepath.Join(d, "rootfs.tar")
	writeTar(t, src, "zstd", manyEntries())
	epoch := time.Unix(1700000000, 0)

	makeOne := func(name string, o Options, staged bool) string {
		img := filepath.Join(d, name+".img")
		newImage(t, img)
		var st *tree.Staged
		if staged {
			// Each staging goes to its own directory: on ext4 hosts readdir order differs between them.
			var err error
			if st, err = tree.Stage(ctx, src, filepath.Join(d, name+".stage"), nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := Make(ctx, img, partOff, partSize, o, st); err != nil {
			t.Fatal(err)
		}
		if err := Check(ctx, img, partOff); err != nil {
			t.Fatal(err)
		}
		return img
	}

	tests := []struct {
		name   string
		o      Options
		staged bool
		same   bool
	}{
		{"rootA", Options{Label: "resin-rootA", InodeRatio: 8192, Time: epoch}, true, true},
		{"rootB", Options{Label: "resin-rootB", InodeRatio: 8192, Time: epoch}, false, true},
		{"state", Options{Label: "resin-state", BlockSize: 4096, Time: epoch}, false, true},
		{"data", Options{Label: "resin-data", BlockSize: 4096, InodeRatio: 8192, Time: epoch}, false, true},
		// Without a fixed time mkfs picks UUIDs and clocks: the comparison must be able to fail.
		{"unpinned", Options{Label: "resin-rootA", InodeRatio: 8192}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := makeOne(tc.name+"-1", tc.o, tc.staged)
			b := makeOne(tc.name+"-2", tc.o, tc.staged)
			if same := testtool.SHA256(t, a) == testtool.SHA256(t, b); same != tc.same {
				t.Fatalf("images identical = %v, want %v", same, tc.same)
			}
			if !tc.same {
				return
			}
			for _, p := range []string{"/", "/bin/su", "/dev/null", "/lost+found", "/etc/b"} {
				if !tc.staged && p != "/" && p != "/lost+found" {
					continue
				}
				in := statPath(t, a, p)
				if in.ctime != epoch.Unix() || in.atime != epoch.Unix() || in.crtime != epoch.Unix() {
					t.Errorf("%s: ctime %d atime %d crtime %d, want %d", p, in.ctime, in.atime, in.crtime, epoch.Unix())
				}
			}
		})
	}
}
