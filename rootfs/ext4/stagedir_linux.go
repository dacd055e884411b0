package ext4

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/tree"
)

// stageSpare is memory an archive staged in a tmpfs leaves free beyond half of what is available.
const stageSpare = 64 << 20

// memoryStage finds a tmpfs for staging an archive in memory instead of on the disk of work: writing and
// then reading a tree in a tmpfs costs no writeback, no journal and no discard on removal. It returns a
// work directory made for the staging (disk.WorkDir: locked, and removed by release, or by a later run
// when this one is killed) and the bytes it may take: half the memory available (to the process's
// cgroup too), less a margin, and no more than the tmpfs has free. ok is false when work is itself in a
// tmpfs (staging there is already in memory) or no tmpfs has room.
func memoryStage(work string) (dir string, release func(), room int64, ok bool) {
	if onTmpfs(work) {
		return "", nil, 0, false
	}
	avail := memAvailable()/2 - stageSpare
	seen := map[string]bool{}
	for _, c := range []string{os.Getenv("TMPDIR"), "/dev/shm", "/tmp"} {
		if c == "" || seen[c] {
			continue
		}
		seen[c] = true
		var fs unix.Statfs_t
		if unix.Statfs(c, &fs) != nil || fs.Type != unix.TMPFS_MAGIC {
			continue
		}
		room := min(int64(fs.Bavail)*int64(fs.Bsize)-stageSpare, avail)
		if room < stageSpare {
			continue
		}
		d, release, err := disk.WorkDir(c, ".hostos-stage-")
		if err != nil {
			continue
		}
		return d, release, room, true
	}
	return "", nil, 0, false
}

func onTmpfs(dir string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(dir, &fs) == nil && fs.Type == unix.TMPFS_MAGIC
}

// noRoom tells a staging that ran out of its tmpfs's room, which staging on disk may not.
func noRoom(err error) bool {
	return errors.Is(err, tree.ErrNoRoom) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// memAvailable is the memory the kernel could give without swapping (MemAvailable), no more than the
// process's cgroup (v2) allows on top of what it uses; 0 when unknown.
func memAvailable() int64 {
	avail := meminfo("MemAvailable")
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return avail
	}
	for _, l := range strings.Split(string(b), "\n") {
		p, ok := strings.CutPrefix(l, "0::")
		if !ok {
			continue
		}
		d := filepath.Join("/sys/fs/cgroup", p)
		for ; ; d = filepath.Dir(d) {
			limit, lerr := readInt(filepath.Join(d, "memory.max"))
			used, uerr := readInt(filepath.Join(d, "memory.current"))
			if lerr == nil && uerr == nil {
				avail = min(avail, max(limit-used, 0))
			}
			if d == "/sys/fs/cgroup" || d == "/" {
				break
			}
		}
	}
	return avail
}

// meminfo reads the field name of /proc/meminfo in bytes, 0 when absent.
func meminfo(name string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), name+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// readInt reads a file holding one integer, such as a cgroup's memory.max ("max" is an error).
func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
}
