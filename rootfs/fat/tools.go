package fat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// ErrToolMissing marks an external program that is not installed.
var ErrToolMissing = errors.New("tool not installed")

// toolEnv is the environment of every tool run: the caller's, made deterministic. t, when set, becomes
// SOURCE_DATE_EPOCH; otherwise an inherited SOURCE_DATE_EPOCH is dropped so that "now" means now.
func toolEnv(t time.Time) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "SOURCE_DATE_EPOCH", "TZ", "LC_ALL", "MTOOLS_SKIP_CHECK", "MTOOLSRC":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "TZ=UTC", "LC_ALL=C.UTF-8", "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
	if !t.IsZero() {
		env = append(env, "SOURCE_DATE_EPOCH="+strconv.FormatInt(t.Unix(), 10))
	}
	return env
}

// run runs a tool and returns its combined output; a failure carries the output's tail.
func run(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, ErrToolMissing, toolHint(name))
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s: %w: %s", name, err, tail(out.Bytes()))
	}
	return out.Bytes(), nil
}

// toolHint says how to get the program name on this system: mcopy and mmd come with mtools, mkfs.vfat and
// fsck.vfat with dosfstools.
func toolHint(name string) string {
	pkg := "mtools"
	if strings.HasSuffix(name, ".vfat") {
		pkg = "dosfstools"
	}
	switch runtime.GOOS {
	case "linux":
		return "install " + pkg
	case "darwin":
		return "on darwin install " + pkg + " (brew install " + pkg + ")"
	case "windows":
		return pkg + " does not run on windows: run this command under WSL or on Linux"
	}
	return "install " + pkg + " (on " + runtime.GOOS + ")"
}

// tail is the last lines of a tool's output, on one line.
func tail(b []byte) string {
	const maxLines = 8
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.Join(lines, " | ")
}

// mkfsFAT is one invocation of mkfs.vfat (dosfstools 4.2) writing a file system into an image at an offset.
type mkfsFAT struct {
	offset            int64 // bytes, a multiple of 512
	layout            Layout
	label             string
	volumeID          uint32
	setVolumeID       bool
	invariant         bool // fixed volume id and label timestamp instead of time-based ones
	hiddenSectors     int64
	sizeKiB           int64
	sectorsPerCluster int64
}

func (m mkfsFAT) args(img string) []string {
	a := []string{
		"-F", strconv.Itoa(m.layout.Bits),
		"-S", strconv.Itoa(SectorSize),
		"-s", strconv.FormatInt(m.sectorsPerCluster, 10),
		"-g", fmt.Sprintf("%d/%d", m.layout.heads, m.layout.sectorsPerTrack),
		"-h", strconv.FormatInt(m.hiddenSectors, 10),
		"-f", strconv.Itoa(nFATs),
		"-M", "0xf8",
		"--mbr=n",
		"--offset=" + strconv.FormatInt(m.offset/SectorSize, 10),
	}
	if m.layout.Bits == 16 {
		a = append(a, "-r", "512")
	}
	if m.label != "" {
		a = append(a, "-n", m.label)
	}
	if m.setVolumeID {
		a = append(a, "-i", fmt.Sprintf("%08x", m.volumeID))
	}
	if m.invariant {
		a = append(a, "--invariant")
	}
	return append(a, img, strconv.FormatInt(m.sizeKiB, 10))
}

func (m mkfsFAT) run(ctx context.Context, img string, t time.Time) error {
	_, err := run(ctx, toolEnv(t), "mkfs.vfat", m.args(img)...)
	return err
}

// mtools runs mtools commands on the FAT file system at byte offset off of an image.
type mtools struct {
	img string
	off int64
	env []string
}

func newMtools(img string, off int64, t time.Time) mtools {
	return mtools{img: img, off: off, env: toolEnv(t)}
}

func (m mtools) drive() string { return m.img + "@@" + strconv.FormatInt(m.off, 10) }

// mmd creates directories (absolute FAT paths), parents first.
func (m mtools) mmd(ctx context.Context, dirs []string) error {
	if len(dirs) == 0 {
		return nil
	}
	args := []string{"-i", m.drive()}
	for _, d := range dirs {
		args = append(args, "::"+d)
	}
	_, err := run(ctx, m.env, "mmd", args...)
	return err
}

// mcopy copies host files into directory dir (an absolute FAT path), each under its own base name,
// overwriting existing files.
func (m mtools) mcopy(ctx context.Context, srcs []string, dir string) error {
	if len(srcs) == 0 {
		return nil
	}
	if !strings.HasSuffix(dir, "/") {
		dir += "/"
	}
	args := append([]string{"-i", m.drive(), "-Q", "-D", "o"}, srcs...)
	args = append(args, "::"+dir)
	_, err := run(ctx, m.env, "mcopy", args...)
	return err
}

// fsckFAT is fsck.vfat (dosfstools 4.2) in check-only mode on a file holding one file system.
type fsckFAT struct{}

func (fsckFAT) check(ctx context.Context, path string) error {
	_, err := run(ctx, toolEnv(time.Time{}), "fsck.vfat", "-n", path)
	return err
}
