package tests

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/tests/testtool"
)

// badInput is one case of the bad-input corpus: a command that must fail with a one-line error naming the
// problem, the exit code asked for, every input byte unchanged, nothing new in the work directory, and in
// bounded time.
type badInput struct {
	name   string
	args   []string
	inputs []string // files whose bytes must not change
	code   int
	want   string
	env    []string
}

// corpusTimeout bounds every case: hostile input must not hold a command.
const corpusTimeout = 60 * time.Second

func runBounded(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), corpusTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, hostosBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("hostos %v: still running after %s", args, corpusTimeout)
	}
	r := result{stdout: so.String(), stderr: se.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("hostos %v: %v", args, err)
	}
	return r
}

// listTree lists every path under dir with its mode type, to catch temporary files left behind.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			out = append(out, p+" "+d.Type().String())
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func runCorpus(t *testing.T, dir string, cases []badInput) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := map[string]string{}
			for _, in := range c.inputs {
				before[in] = testtool.SHA256(t, in)
			}
			tree := listTree(t, dir)
			r := runBounded(t, c.env, c.args...)
			msg := strings.TrimSpace(r.stderr)
			if r.code != c.code || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "hostos: ") || !strings.Contains(msg, c.want) {
				t.Errorf("exit %d (want %d), stderr %q (want one line naming %q)", r.code, c.code, msg, c.want)
			}
			for in, h := range before {
				if testtool.SHA256(t, in) != h {
					t.Errorf("input %s changed", in)
				}
			}
			if after := listTree(t, dir); strings.Join(after, "\n") != strings.Join(tree, "\n") {
				t.Errorf("files appeared or vanished in the work directory:\nbefore %v\nafter  %v", tree, after)
			}
		})
	}
}

// patchMBREntry sets primary entry n (1-4) of an msdos table to start and sectors.
func patchMBREntry(t *testing.T, img string, n int, start, sectors uint32) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, start)
	binary.LittleEndian.PutUint32(b[4:], sectors)
	_, err = f.WriteAt(b, int64(446+(n-1)*16+8))
	must(t, err)
}

func copyFile(t *testing.T, src, dst string) string {
	t.Helper()
	run(t, "cp", "--sparse=always", src, dst)
	return dst
}

func mkfifo(t *testing.T, p string) string {
	t.Helper()
	must(t, syscall.Mkfifo(p, 0o600))
	return p
}

// TestBadInputCorpus: images with crafted tables, images and flag files that are FIFOs or endless devices,
// outputs that are devices or inputs, and images another writer holds.
func TestBadInputCorpus(t *testing.T) {
	t.Parallel() // own images and work directories: runs beside the other long tests
	fx := newUpdateFixture(t, "genericx86-64-ext")
	dir := t.TempDir()
	img := copyFile(t, fx.img, filepath.Join(dir, "good.img"))
	bundle := copyFile(t, fx.bundle, filepath.Join(dir, "v2.hostos"))
	spec := copyFile(t, filepath.Join(fx.dir, "spec.toml"), filepath.Join(dir, "spec.toml"))
	// spec.toml names its root tree by absolute path; the copy builds the same image.

	const mibSectors = 2048
	overMBR := copyFile(t, img, filepath.Join(dir, "over-mbr.img"))
	patchMBREntry(t, overMBR, 3, 0, 48*mibSectors) // rootB from sector 0: a slot write would wipe the table
	pastEnd := copyFile(t, img, filepath.Join(dir, "past-end.img"))
	patchMBREntry(t, pastEnd, 3, 100*mibSectors, 0xfff00000) // 2 TB: a slot write would grow the file
	overlap := copyFile(t, img, filepath.Join(dir, "overlap.img"))
	patchMBREntry(t, overlap, 2, 8*mibSectors, 300*mibSectors) // rootA over rootB and resin-state

	fifo := mkfifo(t, filepath.Join(dir, "fifo"))
	bmapFIFO := mkfifo(t, filepath.Join(dir, "bm.img.bmap"))
	big := filepath.Join(dir, "big.json")
	must(t, os.WriteFile(big, append([]byte(`{"x":"`), append(bytes.Repeat([]byte("y"), 2<<20), []byte(`"}`)...)...), 0o644))

	var cases []badInput
	for _, tc := range []struct{ name, img, want string }{
		{"rootB over the MBR", overMBR, "invalid partition table"},
		{"rootB past the end of the disk", pastEnd, "past the usable end"},
		{"rootA over rootB and state", overlap, "overlap"},
	} {
		cases = append(cases,
			badInput{name: "update: " + tc.name, args: []string{"update", "--image", tc.img, bundle}, inputs: []string{tc.img, bundle}, code: 1, want: tc.want},
			badInput{name: "configure: " + tc.name, args: []string{"configure", tc.img, "--hostname", "x"}, inputs: []string{tc.img}, code: 1, want: tc.want},
			badInput{name: "status: " + tc.name, args: []string{"status", "--image", tc.img}, inputs: []string{tc.img}, code: 1, want: tc.want},
			badInput{name: "commit: " + tc.name, args: []string{"commit", "--image", tc.img}, inputs: []string{tc.img}, code: 1, want: tc.want},
			badInput{name: "inspect: " + tc.name, args: []string{"inspect", tc.img}, inputs: []string{tc.img}, code: 1, want: tc.want},
		)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"configure", []string{"configure", fifo, "--hostname", "x"}},
		{"inspect", []string{"inspect", fifo}},
		{"config read", []string{"config", "read", fifo}},
		{"config write", []string{"config", "write", fifo, "hostname", "x"}},
		{"update --image", []string{"update", "--image", fifo, bundle}},
		{"status --image", []string{"status", "--image", fifo}},
	} {
		cases = append(cases, badInput{name: tc.name + " of a FIFO", args: tc.args, inputs: []string{img, bundle}, code: 1, want: "not a regular file or block device"})
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"--splash /dev/zero", []string{"configure", img, "--splash", "/dev/zero"}, 1, "not a regular file"},
		{"--splash FIFO", []string{"configure", img, "--splash", fifo}, 1, "not a regular file"},
		{"--config /dev/zero", []string{"configure", img, "--config", "/dev/zero"}, 1, "not a regular file"},
		{"--config FIFO", []string{"configure", img, "--config", fifo}, 1, "not a regular file"},
		{"--config over 1 MiB", []string{"configure", img, "--config", big}, 1, "1 MiB"},
		{"--ssh-key /dev/zero", []string{"configure", img, "--ssh-key", "/dev/zero"}, 1, "not a regular file"},
		{"--udev-rule /dev/zero", []string{"configure", img, "--udev-rule", "r=/dev/zero"}, 1, "not a regular file"},
		{"--system-connection /dev/zero", []string{"configure", img, "--system-connection", "/dev/zero"}, 1, "not a regular file"},
		{"config inject /dev/zero", []string{"config", "inject", img, "/dev/zero"}, 1, "not a regular file"},
		{"config inject FIFO", []string{"config", "inject", img, fifo}, 1, "not a regular file"},
		{"update --key /dev/zero", []string{"update", "--image", img, "--key", "/dev/zero", bundle}, 1, "not a regular file"},
		{"build --spec /dev/zero", []string{"build", "--spec", "/dev/zero", "-o", filepath.Join(dir, "x.img")}, 1, "not a regular file"},
		{"build --spec FIFO", []string{"build", "--spec", fifo, "-o", filepath.Join(dir, "x.img")}, 1, "not a regular file"},
		{"health --checks /dev/zero", []string{"health", "--image", img, "--checks", "/dev/zero"}, 1, "not a regular file"},
		{"bundle create --sign /dev/zero", []string{"bundle", "create", "--rootfs", spec, "--device-type", "genericx86-64-ext",
			"--version", "9", "--sign", "/dev/zero", "-o", filepath.Join(dir, "x.hostos")}, 1, "not a regular file"},
		{"update --registry-auth FIFO", []string{"update", "--image", img, "--registry-auth", fifo, bundle}, 1, "not a regular file"},
		{"update --registry-auth without a colon", []string{"update", "--image", img, "--registry-auth", "justauser", bundle}, 1, "--registry-auth"},
		{"preload --registry-auth FIFO", []string{"preload", img, "--image", "docker://127.0.0.1:9/x", "--registry-auth", fifo}, 1, "not a regular file"},
		{"preload --compose /dev/zero", []string{"preload", img, "--compose", "/dev/zero"}, 1, "not a regular file"},
		{"bundle inspect --key FIFO", []string{"bundle", "inspect", "--key", fifo, bundle}, 1, "not a regular file"},
		{"build -o /dev/null", []string{"build", "--spec", spec, "-o", "/dev/null"}, 1, "character device"},
		{"build -o its own spec", []string{"build", "--spec", spec, "-o", spec}, 1, "is the input"},
		{"build -o a FIFO", []string{"build", "--spec", spec, "-o", fifo}, 1, "FIFO"},
		{"build --bmap onto a FIFO", []string{"build", "--spec", spec, "--bmap", "-o", strings.TrimSuffix(bmapFIFO, ".bmap")}, 1, "FIFO"},
		{"bundle create -o /dev/null", []string{"bundle", "create", "--rootfs", spec, "--device-type", "genericx86-64-ext",
			"--version", "9", "-o", "/dev/null"}, 1, "character device"},
	} {
		cases = append(cases, badInput{name: tc.name, args: tc.args, inputs: []string{img, bundle, spec}, code: tc.code, want: tc.want})
	}
	runCorpus(t, dir, cases)

	// /dev/null is still the device it was.
	if fi, err := os.Stat("/dev/null"); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("/dev/null is no longer a character device: %v %v", fi, err)
	}
}

// TestWritersExclude: while one process writes an image (here: holds the writers' flock on it, as hostos
// does for its whole run), every other writer refuses at once and changes nothing; readers still read.
func TestWritersExclude(t *testing.T) {
	fx := newUpdateFixture(t, "genericx86-64-ext")
	dir := filepath.Dir(fx.img)
	f, err := os.Open(fx.img)
	must(t, err)
	defer f.Close()
	must(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))
	cfg := write(t, dir, "c.json", `{"hostname":"other"}`)
	var cases []badInput
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"configure", []string{"configure", fx.img, "--hostname", "x"}},
		{"config write", []string{"config", "write", fx.img, "hostname", "x"}},
		{"config inject", []string{"config", "inject", fx.img, cfg}},
		{"update", []string{"update", "--image", fx.img, fx.bundle}},
		{"commit", []string{"commit", "--image", fx.img}},
		{"rollback", []string{"rollback", "--image", fx.img}},
	} {
		cases = append(cases, badInput{name: tc.name, args: tc.args, inputs: []string{fx.img}, code: 1, want: "in use by another writer"})
	}
	runCorpus(t, dir, cases)
	if r := runBounded(t, nil, "inspect", fx.img); r.code != 0 {
		t.Errorf("inspect while another process writes: exit %d: %s", r.code, r.stderr)
	}
	must(t, syscall.Flock(int(f.Fd()), syscall.LOCK_UN))
	if r := runBounded(t, nil, "configure", fx.img, "--hostname", "x"); r.code != 0 {
		t.Errorf("configure once the lock is free: exit %d: %s", r.code, r.stderr)
	}
}

// TestUpdateLeavesNoLockFiles: updating an image creates nothing in $TMPDIR, so nothing there (a symlink
// planted by another user, say) can redirect a lock file; the planted link's target is untouched.
func TestUpdateLeavesNoLockFiles(t *testing.T) {
	fx := newUpdateFixture(t, "genericx86-64-ext")
	tmp := t.TempDir()
	victim := write(t, t.TempDir(), "victim", "precious")
	st, err := os.Stat(fx.img)
	must(t, err)
	sys := st.Sys().(*syscall.Stat_t)
	for _, name := range []string{"hostos-update-disk.img.lock", fmt.Sprintf("hostos-update-%d-%d.lock", sys.Dev, sys.Ino)} {
		must(t, os.Symlink(victim, filepath.Join(tmp, name)))
	}
	before := listTree(t, tmp)
	env := []string{"TMPDIR=" + tmp}
	if r := runBounded(t, env, "update", "--image", fx.img, fx.bundle); r.code != 0 {
		t.Fatalf("update: exit %d: %s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the file behind a planted symlink changed: %q", b)
	}
	if after := listTree(t, tmp); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("update left files in TMPDIR: %v", after)
	}
}

// TestInterruptEndsPromptly: SIGINT and SIGTERM end an update held by a server that accepted the
// connection and sends nothing, with the shell's exit code, the bootloader still on the running slot.
func TestInterruptEndsPromptly(t *testing.T) {
	fx := newUpdateFixture(t, "genericx86-64-ext")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	stall := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000000")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	})}
	go srv.Serve(ln)
	defer func() { close(stall); srv.Close() }()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			before := testtool.SHA256(t, fx.img)
			cmd := exec.Command(hostosBin, "update", "--image", fx.img, "http://"+ln.Addr().String()+"/v2.hostos")
			var se bytes.Buffer
			cmd.Stderr = &se
			must(t, cmd.Start())
			time.Sleep(1500 * time.Millisecond) // connected and waiting for the body
			must(t, cmd.Process.Signal(sig))
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 128+int(sig) {
					t.Errorf("exit: %v, want code %d; stderr %q", err, 128+int(sig), se.String())
				}
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("still running 30 s after %v", sig)
			}
			if testtool.SHA256(t, fx.img) != before {
				if st := status(t, fx.img, ""); st.Env.Root != bootenv.SlotA || st.Env.UpgradeAvailable {
					t.Errorf("after the interrupt the bootloader points at %s (upgrade_available %v), want A", st.Env.Root, st.Env.UpgradeAvailable)
				}
			}
		})
	}
}

// TestUpdateRefusesEmptyRoot: a bundle of an empty root filesystem verifies, but it is no operating
// system: the update is refused before the switch and the device boots what it booted.
func TestUpdateRefusesEmptyRoot(t *testing.T) {
	fx := newUpdateFixture(t, "genericx86-64-ext")
	empty := filepath.Join(fx.dir, "empty")
	must(t, os.MkdirAll(empty, 0o755))
	b := filepath.Join(fx.dir, "empty.hostos")
	mustHostos(t, nil, nil, "bundle", "create", "-q", "--rootfs", empty, "--device-type", "genericx86-64-ext",
		"--version", "9.9.9", "--root-size", "16", "-o", b)
	r := runBounded(t, nil, "update", "--image", fx.img, b)
	if r.code != 1 || !strings.Contains(r.stderr, "not an operating system") || !strings.Contains(r.stderr, "nothing switched") {
		t.Fatalf("update of an empty root: exit %d, stderr %q", r.code, r.stderr)
	}
	st := status(t, fx.img, "")
	if st.Env.Root != bootenv.SlotA || st.Env.UpgradeAvailable || len(st.Crumbs) != 0 {
		t.Errorf("after the refusal: %+v, want A, committed, no breadcrumbs", st)
	}
	if got := powerOn(t, fx.img); got != bootenv.SlotA {
		t.Errorf("powered on into %s, want A", got)
	}
}

// TestBuildRefusesHugeSizes: sizes that would overflow the layout's byte sums are refused by name.
func TestBuildRefusesHugeSizes(t *testing.T) {
	dir := t.TempDir()
	var cases []badInput
	for _, key := range []string{"boot", "root", "state", "data"} {
		spec := write(t, dir, key+".toml", "[sizes]\n"+key+" = 9223372036854775807\n")
		cases = append(cases, badInput{name: key, args: []string{"build", "--spec", spec, "-o", filepath.Join(dir, key+".img")},
			inputs: []string{spec}, code: 1, want: "sizes." + key})
	}
	spec := write(t, dir, "image.toml", "image_size_mib = 9223372036854775807\n")
	cases = append(cases, badInput{name: "image_size_mib", args: []string{"build", "--spec", spec, "-o", filepath.Join(dir, "i.img")},
		inputs: []string{spec}, code: 1, want: "image_size_mib"})
	runCorpus(t, dir, cases)
}

// TestInspectReportsBootHealth: FAT copies that differ (as balena's fatfs leaves them) are reported by
// inspect, and hostos repair makes the file system clean again, as fsck.vfat judges it.
func TestInspectReportsBootHealth(t *testing.T) {
	img := builtImage(t, "genericx86-64-ext", "msdos")
	off, size := bootRange(t, img)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	must(t, err)
	bs := make([]byte, 512)
	_, err = f.ReadAt(bs, off)
	must(t, err)
	bps := int64(binary.LittleEndian.Uint16(bs[11:]))
	reserved := int64(binary.LittleEndian.Uint16(bs[14:]))
	fatSectors := int64(binary.LittleEndian.Uint16(bs[22:]))
	second := off + (reserved+fatSectors)*bps
	_, err = f.WriteAt([]byte{0xf7, 0xff}, second+2*100) // cluster 100 marked bad in the second FAT only
	must(t, err)
	must(t, f.Close())
	out := mustHostos(t, nil, nil, "inspect", img)
	if !strings.Contains(out, "problems") || !strings.Contains(out, "hostos repair") {
		t.Errorf("inspect does not report the differing FATs:\n%s", out)
	}
	var rep struct {
		BootHealth struct {
			Findings []struct{ Kind string } `json:"findings"`
		} `json:"bootHealth"`
	}
	must(t, json.Unmarshal([]byte(mustHostos(t, nil, nil, "inspect", "--json", img)), &rep))
	if len(rep.BootHealth.Findings) == 0 {
		t.Error("inspect --json: no findings")
	}
	mustHostos(t, nil, nil, "repair", img)
	fsckVfat(t, img, off, size)
	if out := mustHostos(t, nil, nil, "inspect", img); !strings.Contains(out, "clean") {
		t.Errorf("after repair inspect says:\n%s", out)
	}
}

// TestFingerprintAfterEnvOnlySteps: commit and rollback change only the bootloader environment, and the
// fingerprint still verifies after each.
func TestFingerprintAfterEnvOnlySteps(t *testing.T) {
	fx := newUpdateFixture(t, "genericx86-64-ext")
	verified := func(step string) {
		t.Helper()
		var rep struct {
			Fingerprint struct {
				Verified bool   `json:"verified"`
				Problem  string `json:"problem"`
			} `json:"fingerprint"`
		}
		must(t, json.Unmarshal([]byte(mustHostos(t, nil, nil, "inspect", "--json", fx.img)), &rep))
		if !rep.Fingerprint.Verified {
			t.Errorf("after %s the fingerprint does not verify: %s", step, rep.Fingerprint.Problem)
		}
	}
	mustHostos(t, nil, nil, "update", "-q", "--image", fx.img, fx.bundle)
	verified("update")
	mustHostos(t, nil, nil, "commit", "--image", fx.img, "--booted", "B")
	verified("commit")
	mustHostos(t, nil, nil, "rollback", "--image", fx.img, "--booted", "B")
	verified("rollback")
}
