package fat

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestPlanLayoutMatchesMkfs compares the planned layout with what mkfs.vfat chooses on its own for a
// standalone file of the same size (as balena's build makes the boot partition).
func TestPlanLayoutMatchesMkfs(t *testing.T) {
	needTools(t, "mkfs.vfat")
	for _, tc := range []struct {
		bits int
		mib  int64
	}{
		{16, 9}, {16, 16}, {16, 40}, {16, 100}, {16, 129}, {16, 256}, {16, 300}, {16, 1024}, {16, 2047},
		{32, 34}, {32, 40}, {32, 100}, {32, 260}, {32, 261}, {32, 300}, {32, 1024}, {32, 8200},
	} {
		t.Run(fmt.Sprintf("fat%d-%dMiB", tc.bits, tc.mib), func(t *testing.T) {
			l, err := PlanLayout(tc.bits, tc.mib*mib)
			if err != nil {
				t.Fatal(err)
			}
			img := filepath.Join(t.TempDir(), "fs.img")
			tool(t, "mkfs.vfat", "-F", strconv.Itoa(tc.bits), "-S", "512", "-C", img, strconv.FormatInt(tc.mib*1024, 10))
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fsys, err := Open(f, 0, tc.mib*mib)
			if err != nil {
				t.Fatal(err)
			}
			if fsys.Bits() != l.Bits || fsys.ClusterSize() != l.ClusterSize || fsys.Clusters() != l.Clusters {
				t.Errorf("mkfs.vfat made fat%d with %d clusters of %d bytes, planned fat%d with %d of %d",
					fsys.Bits(), fsys.Clusters(), fsys.ClusterSize(), l.Bits, l.Clusters, l.ClusterSize)
			}
		})
	}
}

func TestPlanLayoutRejects(t *testing.T) {
	for _, tc := range []struct {
		bits int
		size int64
	}{{12, 40 * mib}, {16, 4 * mib}, {32, 30 * mib}, {16, 8 << 30}, {16, 40*mib + 512}} {
		if l, err := PlanLayout(tc.bits, tc.size); err == nil {
			t.Errorf("PlanLayout(%d, %d) = %+v, want an error", tc.bits, tc.size, l)
		}
	}
}

// sparseFiles makes host files of the given sizes (holes, so they cost nothing) under nested directories.
func sparseFiles(t *testing.T, sizes ...int64) []File {
	t.Helper()
	dir := t.TempDir()
	var files []File
	for i, s := range sizes {
		p := filepath.Join(dir, strconv.Itoa(i))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(s); err != nil {
			t.Fatal(err)
		}
		f.Close()
		files = append(files, File{Dst: fmt.Sprintf("/overlays/dir %d/file with a long name %d.bin", i%3, i), Src: p})
	}
	return files
}

// TestSpaceBoundary fills file systems to exactly their capacity as Space computes it, then one cluster
// beyond; mcopy, the real allocator, must succeed on the first and fail on the second.
func TestSpaceBoundary(t *testing.T) {
	needTools(t, "mkfs.vfat", "mmd", "mcopy", "fsck.vfat")
	ctx := context.Background()
	for _, tc := range []struct {
		bits int
		size int64
	}{{16, 40 * mib}, {32, 40 * mib}, {32, 100 * mib}} {
		for _, extra := range []int64{0, 1} {
			t.Run(fmt.Sprintf("fat%d-%dMiB-over%d", tc.bits, tc.size/mib, extra), func(t *testing.T) {
				small := sparseFiles(t, 100, 5000, 0, 70000, 1, 2, 3, 4, 5, 6)
				need, capacity, err := Space(tc.bits, tc.size, small)
				if err != nil {
					t.Fatal(err)
				}
				l, _ := PlanLayout(tc.bits, tc.size)
				// One more file fills the rest: its own entry fits the directory clusters already counted.
				fill := sparseFiles(t, capacity-need+extra*l.ClusterSize)
				fill[0].Dst = "/fill.bin"
				files := append(small, fill...)
				need, capacity, err = Space(tc.bits, tc.size, files)
				if err != nil {
					t.Fatal(err)
				}
				if want := capacity + extra*l.ClusterSize; need != want {
					t.Fatalf("Space need %d, want %d", need, want)
				}
				img := sparseImage(t, 4*mib+tc.size)
				if err := Make(ctx, img, 4*mib, tc.size, Options{Bits: tc.bits, Label: "resin-boot"}); err != nil {
					t.Fatal(err)
				}
				err = Copy(ctx, img, 4*mib, files, time.Time{})
				if extra == 0 && err != nil {
					t.Fatalf("files that Space says fit exactly: %v", err)
				}
				if extra == 1 && err == nil {
					t.Fatal("files one cluster over the capacity Space reports were copied")
				}
				if extra == 1 {
					t.Logf("one cluster over: %v", err)
				}
				if extra == 0 {
					if err := Fsck(ctx, img, 4*mib, tc.size); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

func TestSpaceAndMinSize(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bits  int
		sizes []int64
		fits  bool
	}{
		{"fat32 fits", 32, []int64{30 * mib, 3 * mib, 1000, 0}, true},
		{"fat32 overflows", 32, []int64{30 * mib, 10 * mib, 1000}, false},
		{"fat16 fits", 16, []int64{35 * mib, 1}, true},
		{"fat16 overflows", 16, []int64{20 * mib, 20 * mib}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := sparseFiles(t, tc.sizes...)
			need, capacity, err := Space(tc.bits, 40*mib, files)
			if err != nil {
				t.Fatal(err)
			}
			if (need <= capacity) != tc.fits {
				t.Errorf("Space: need %d, capacity %d; want fits=%v", need, capacity, tc.fits)
			}
			var sum int64
			for _, s := range tc.sizes {
				sum += s
			}
			if need < sum {
				t.Errorf("Space: need %d is less than the %d bytes of data", need, sum)
			}
			m, err := MinSize(tc.bits, files)
			if err != nil {
				t.Fatal(err)
			}
			if (m <= 40*mib) != tc.fits {
				t.Errorf("MinSize = %d MiB; want fits in 40 MiB = %v", m/mib, tc.fits)
			}
			if n, c, err := Space(tc.bits, m, files); err != nil || n > c {
				t.Errorf("at MinSize %d MiB: need %d, capacity %d, %v", m/mib, n, c, err)
			}
			if n, c, err := Space(tc.bits, m-mib, files); err == nil && n <= c {
				t.Errorf("files already fit at %d MiB, below MinSize", m/mib-1)
			}
		})
	}
}

func TestSpaceRootEntries(t *testing.T) {
	var files []File
	for i := range 600 {
		files = append(files, File{Dst: fmt.Sprintf("/F%d", i), Data: []byte{1}})
	}
	if _, _, err := Space(16, 40*mib, files); !errors.Is(err, ErrNoSpace) {
		t.Errorf("600 root files in fat16: %v, want ErrNoSpace", err)
	}
	if need, capacity, err := Space(32, 40*mib, files); err != nil || need > capacity {
		t.Errorf("600 root files in fat32: need %d, capacity %d, %v", need, capacity, err)
	}
}
