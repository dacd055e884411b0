package tests

import (
	"github.com/hostos/hostos/tests/testtool"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildReproducible: two builds of the same inputs with the same SOURCE_DATE_EPOCH are byte-identical.
func TestBuildReproducible(t *testing.T) {
	t.Parallel() // own images and work directories: runs beside the other long tests
	fx := newFixture(t, "genericx86-64-ext", "msdos", "")
	env := []string{"SOURCE_DATE_EPOCH=1700000000"}
	a, b := filepath.Join(fx.dir, "a.img"), filepath.Join(fx.dir, "b.img")
	mustHostos(t, env, nil, "build", "--spec", fx.spec, "-o", a)
	mustHostos(t, env, nobody, "build", "--spec", fx.spec, "-o", b)
	if ha, hb := testtool.SHA256(t, a), testtool.SHA256(t, b); ha != hb {
		t.Fatalf("same inputs, different images: %s %s", ha, hb)
	}
	// A different epoch gives a different image: the test can fail.
	c := filepath.Join(fx.dir, "c.img")
	mustHostos(t, []string{"SOURCE_DATE_EPOCH=1700000001"}, nil, "build", "--spec", fx.spec, "-o", c)
	if testtool.SHA256(t, a) == testtool.SHA256(t, c) {
		t.Fatal("different SOURCE_DATE_EPOCH, same image")
	}
}

// TestBuildDefault: with no inputs the embedded default builds a complete image with hostos inside.
func TestBuildDefault(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "demo.img")
	mustHostos(t, nil, nil, "build", "-o", out)
	r := inspectJSON(t, out)
	if r.DeviceType != "genericx86-64-ext" || r.OSVersion == "" || !r.Fingerprint.Verified || len(r.Partitions) != 5 {
		t.Fatalf("inspect of the default image: %+v", r)
	}
	root := r.Partitions[1]
	s := debugfs(t, out, root.Start, "stat /usr/bin/hostos")
	if !strings.Contains(s, "Type: regular") || !strings.Contains(s, "User:     0") {
		t.Errorf("/usr/bin/hostos in rootA:\n%s", s)
	}
	for _, p := range r.Partitions[1:] {
		e2fsckCopy(t, out, p.Start, p.Size)
	}
	fsckVfat(t, out, r.Partitions[0].Start, r.Partitions[0].Size)
}

// TestBuildCompressedAndBmap: --compress and --bmap outputs decompress and copy to the raw image.
func TestBuildCompressedAndBmap(t *testing.T) {
	t.Parallel() // own images and work directories: runs beside the other long tests
	fx := newFixture(t, "genericx86-64-ext", "msdos", "")
	env := []string{"SOURCE_DATE_EPOCH=1700000000"}
	raw := filepath.Join(fx.dir, "raw.img")
	mustHostos(t, env, nil, "build", "--spec", fx.spec, "-o", raw, "--bmap")
	want := testtool.SHA256(t, raw)

	// bmaptool copy with the block map reproduces the image.
	copyOut := filepath.Join(fx.dir, "copy.img")
	run(t, testtool.Need(t, "bmaptool"), "copy", "--bmap", raw+".bmap", raw, copyOut)
	if got := testtool.SHA256(t, copyOut); got != want {
		t.Errorf("bmaptool copy gives %s, want %s", got, want)
	}
	for _, c := range []struct{ algo, tool string }{{"zst", "zstd"}, {"xz", "xz"}} {
		z := filepath.Join(fx.dir, "img."+c.algo)
		mustHostos(t, env, nil, "build", "--spec", fx.spec, "-o", z, "--compress", c.algo)
		dec := filepath.Join(fx.dir, "dec-"+c.algo)
		cmd := exec.Command(testtool.Need(t, c.tool), "-d", "-c", z)
		f, err := os.Create(dec)
		must(t, err)
		cmd.Stdout = f
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s -d: %v", c.tool, err)
		}
		f.Close()
		if got := testtool.SHA256(t, dec); got != want {
			t.Errorf("%s: decompressed image %s, want %s", c.algo, got, want)
		}
	}
}

// TestBuildBadInputs: each bad input gives one line on stderr naming the problem, a non-zero exit and no
// file at the output path.
func TestBuildBadInputs(t *testing.T) {
	fx := newFixture(t, "genericx86-64-ext", "msdos", "")
	write := func(name, body string) string {
		p := filepath.Join(fx.dir, name)
		must(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	unreadable := write("unreadable.tar", "secret")
	must(t, os.Chmod(unreadable, 0))
	outDir := filepath.Join(fx.dir, "outdir")
	must(t, os.Mkdir(outDir, 0o777))
	big := filepath.Join(fx.dir, "big")
	must(t, os.MkdirAll(big, 0o777))
	must(t, os.WriteFile(filepath.Join(big, "blob"), make([]byte, 6*mib), 0o644))
	must(t, os.WriteFile(filepath.Join(fx.dir, "kernel"), nil, 0o644))
	must(t, os.Truncate(filepath.Join(fx.dir, "kernel"), 20*mib))
	cases := []struct {
		name string
		spec string
		out  string
		want string
	}{
		{"missing rootfs", "[rootfs]\nsource = \"nope.tar\"\n", "", "nope.tar"},
		{"malformed spec", "device_type = \n", "", "bad.toml:1"},
		{"unknown key", "device_type = \"genericx86-64-ext\"\ncolour = \"red\"\n", "", `unknown key "colour"`},
		{"wrong type", "alignment_mib = \"four\"\n", "", "alignment_mib"},
		{"unknown device type", "device_type = \"toaster\"\n", "", "toaster"},
		{"rootfs too big", "[sizes]\nroot = 4\n[rootfs]\nsource = \"big\"\n", "", "does not fit"},
		{"boot files too big", "[sizes]\nboot = 16\n[boot]\nfiles = [\"kernel\"]\ndeploy_dir = \".\"\n", "", "overflow the boot partition"},
		{"image size too small", "image_size_mib = 100\n", "", "MiB"},
		{"output is a directory", "", outDir, "directory"},
		{"unreadable source", "[rootfs]\nsource = \"unreadable.tar\"\n", "", "unreadable.tar"},
		{"bad partition table", "partition_table = \"apm\"\n", "", "partition_table"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := write("bad.toml", c.spec)
			out := c.out
			if out == "" {
				out = filepath.Join(fx.dir, "bad"+string(rune('a'+i))+".img")
			}
			r := hostos(t, nil, nobody, "build", "--spec", spec, "-o", out)
			if r.code == 0 {
				t.Fatalf("exit 0, want failure")
			}
			msg := strings.TrimSpace(r.stderr)
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "hostos: ") || !strings.Contains(msg, c.want) {
				t.Errorf("stderr %q: want one line naming %q", r.stderr, c.want)
			}
			if c.out == "" && fileExists(out) {
				t.Errorf("a partial image was left at %s", out)
			}
			left, _ := filepath.Glob(filepath.Join(fx.dir, ".*hostos-*"))
			if len(left) > 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
		})
	}
}
