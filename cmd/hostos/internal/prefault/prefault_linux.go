package prefault

// This file imports only syscall and unsafe, and parses /proc/self/maps by hand: a package whose
// imports are all initialised is initialised first, so the fewer it imports the sooner it starts.

import (
	"syscall"
	"unsafe"
)

const (
	madvPopulateRead  = 22 // MADV_POPULATE_READ: map pages as a read fault would
	madvPopulateWrite = 23 // MADV_POPULATE_WRITE: map pages as a write fault would
	heapAhead         = 2 << 20
)

// anchor is a heap object: its address tells where the heap grows from.
var anchor *[16]byte

func init() {
	if v, ok := syscall.Getenv("HOSTOS_PREFAULT"); ok && v == "0" {
		return
	}
	anchor = new([16]byte)
	page := uintptr(syscall.Getpagesize())
	heap := uintptr(unsafe.Pointer(anchor)) &^ (page - 1)
	go populate(heap, page)
}

// populate maps the next heapAhead bytes of the heap from heap on, then the executable's read-only
// mappings where they are in the page cache. Errors are ignored: what is not populated faults in as
// it would have anyway.
func populate(heap, page uintptr) {
	madvise(heap, heapAhead, madvPopulateWrite)
	var buf [16 << 10]byte
	n := readMaps(buf[:])
	for _, m := range executableMappings(buf[:n]) {
		populateResident(m.start, m.end, page)
	}
}

func madvise(addr, n uintptr, advice int) error {
	_, _, e := syscall.Syscall(syscall.SYS_MADVISE, addr, n, uintptr(advice))
	if e != 0 {
		return e
	}
	return nil
}

// readMaps reads the start of /proc/self/maps into buf: the executable's mappings come first.
func readMaps(buf []byte) int {
	fd, err := syscall.Open("/proc/self/maps", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer syscall.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if m <= 0 || err != nil {
			break
		}
		n += m
	}
	return n
}

type mapping struct{ start, end uintptr }

// executableMappings returns, from the text of /proc/self/maps, the read-only and executable
// file mappings of the first file mapped (the executable: its code and its read-only data).
func executableMappings(maps []byte) []mapping {
	var (
		out  []mapping
		exe  string
		line []byte
	)
	for len(maps) > 0 {
		line, maps = cutLine(maps)
		// start-end perms offset dev inode path
		f := fields(line)
		if len(f) < 6 || len(f[1]) != 4 {
			continue
		}
		path := string(f[5])
		if exe == "" {
			if path[0] != '/' {
				continue
			}
			exe = path
		}
		if path != exe {
			break
		}
		perms := f[1]
		if perms[0] != 'r' || perms[1] != '-' { // writable mappings are copied on write: not these
			continue
		}
		start, end, ok := parseRange(f[0])
		if ok {
			out = append(out, mapping{start, end})
		}
	}
	return out
}

// populateResident populates the pages of [start, end) that mincore reports in the page cache, in
// runs.
func populateResident(start, end, page uintptr) {
	const chunk = 4096 // pages asked of mincore at a time
	var vec [chunk]byte
	for base := start; base < end; base += chunk * page {
		n := min((end-base+page-1)/page, chunk)
		if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, base, n*page, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			return
		}
		for i := uintptr(0); i < n; {
			if vec[i]&1 == 0 {
				i++
				continue
			}
			j := i
			for j < n && vec[j]&1 != 0 {
				j++
			}
			madvise(base+i*page, (j-i)*page, madvPopulateRead)
			i = j
		}
	}
}

func cutLine(b []byte) (line, rest []byte) {
	for i, c := range b {
		if c == '\n' {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

// fields splits a line of /proc/self/maps at spaces: at most six fields, the last one the rest of
// the line (a path may hold spaces).
func fields(line []byte) [][]byte {
	var f [][]byte
	for len(f) < 5 {
		for len(line) > 0 && line[0] == ' ' {
			line = line[1:]
		}
		if len(line) == 0 {
			return f
		}
		i := 0
		for i < len(line) && line[i] != ' ' {
			i++
		}
		f = append(f, line[:i])
		line = line[i:]
	}
	for len(line) > 0 && line[0] == ' ' {
		line = line[1:]
	}
	if len(line) > 0 {
		f = append(f, line)
	}
	return f
}

// parseRange parses "start-end" in hexadecimal.
func parseRange(b []byte) (start, end uintptr, ok bool) {
	cur := &start
	seen := false
	for _, c := range b {
		var d uintptr
		switch {
		case c >= '0' && c <= '9':
			d = uintptr(c - '0')
		case c >= 'a' && c <= 'f':
			d = uintptr(c-'a') + 10
		case c == '-' && cur == &start && seen:
			cur, seen = &end, false
			continue
		default:
			return 0, 0, false
		}
		*cur = *cur<<4 | d
		seen = true
	}
	return start, end, cur == &end && seen && end > start
}
