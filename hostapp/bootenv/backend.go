package bootenv

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/rootfs/bootfs"
)

// Slot names one of the two root partitions of a balenaOS disk.
type Slot string

// The two root slots: resin-rootA and resin-rootB.
const (
	SlotA Slot = "A"
	SlotB Slot = "B"
)

// Other is the slot that is not s; it is "" for a slot other than A or B.
func (s Slot) Other() Slot {
	switch s {
	case SlotA:
		return SlotB
	case SlotB:
		return SlotA
	}
	return ""
}

func (s Slot) valid() bool { return s == SlotA || s == SlotB }

// Env is the A/B state a bootloader keeps on the boot partition.
type Env struct {
	Root             Slot // the root the bootloader boots (before any boot-count fallback)
	UpgradeAvailable bool // the root has not been committed: the bootloader counts boots and falls back
	BootCount        int  // boots counted since the root was last switched or committed
}

func (e Env) check() error {
	if !e.Root.valid() {
		return fmt.Errorf("bootloader environment: root %q, want A or B", e.Root)
	}
	if e.BootCount < 0 {
		return fmt.Errorf("bootloader environment: negative boot count %d", e.BootCount)
	}
	return nil
}

// Parts are the partition numbers of the root slots on the boot disk (2 and 3 in every balenaOS layout).
type Parts struct{ A, B int }

// Number is the partition number of slot s, 0 for a slot other than A or B.
func (p Parts) Number(s Slot) int {
	switch s {
	case SlotA:
		return p.A
	case SlotB:
		return p.B
	}
	return 0
}

// Slot is the slot partition n holds; ok is false when n is neither root partition.
func (p Parts) Slot(n int) (s Slot, ok bool) {
	switch n {
	case p.A:
		return SlotA, true
	case p.B:
		return SlotB, true
	}
	return "", false
}

func (p Parts) check() error {
	if p.A < 1 || p.B < 1 || p.A == p.B {
		return fmt.Errorf("root partitions A=%d B=%d: want two different partition numbers from 1", p.A, p.B)
	}
	return nil
}

// Backend reads and writes Env in a bootloader's own files on the boot partition.
//
// Write is power-loss safe: every file is replaced with FS.WriteFile, which is atomic per file, and where a
// backend has several files it writes them in an order chosen so that any prefix of the writes leaves a state
// that boots the old or the new root and reads back without error. Write keeps every variable it does not own
// (other grubenv keys, extra lines of resinOS_uEnv.txt) and leaves alone a file that already holds what it
// would write, so an unchanged Env costs no write to the FAT.
type Backend interface {
	// Name is the bootloader: "grub", "u-boot" or "balena-bootloader".
	Name() string
	Read(fsys bootfs.FS) (Env, error)
	Write(fsys bootfs.FS, e Env) error
	// Files are the boot-partition paths this backend owns; an updater must never overwrite them with a new
	// OS's boot files.
	Files() []string
}

// ForBootloader returns the backend for a device type's bootloader (one of the config.Bootloader constants):
// GRUB for "grub" (legacy layout, /grub/grubenv) and "grub-efi" (EFI layout, /EFI/BOOT/grubenv; GrubLayout
// decides for a given boot partition), U-Boot for "u-boot" and "rpi" (balenaOS boots Raspberry Pis through
// U-Boot), and balena's own bootloader for "balena-bootloader".
func ForBootloader(name string, p Parts) (Backend, error) {
	switch name {
	case config.BootloaderGRUB:
		return Grub(p), nil
	case config.BootloaderGRUBEFI:
		return GrubEFI(p), nil
	case config.BootloaderUBoot, config.BootloaderRPi:
		return UBoot(p), nil
	case config.BootloaderBalenaBL:
		return BalenaBootloader(p), nil
	}
	return nil, fmt.Errorf("bootloader %q: no environment backend", name)
}

// Detect picks the backend from the files on fsys, for images whose device type is unknown: a grubenv
// (/grub/grubenv or /EFI/BOOT/grubenv) means GRUB, else /bootenv means balena's bootloader, else U-Boot,
// whose files (resinOS_uEnv.txt, bootcount.env) a fresh image does not have yet. A U-Boot file beside a
// grubenv or /bootenv is taken for a leftover: balenaOS deletes resinOS_uEnv.txt when it moves a board to
// its own bootloader precisely because a stale one would otherwise win.
func Detect(fsys bootfs.FS, p Parts) (Backend, error) {
	for _, c := range []struct {
		files []string
		b     Backend
	}{
		{[]string{grubEnvPath, grubEFIEnvPath}, Grub(p)},
		{[]string{bootEnvPath}, BalenaBootloader(p)},
	} {
		for _, name := range c.files {
			ok, err := exists(fsys, name)
			if err != nil {
				return nil, err
			}
			if ok {
				return c.b, nil
			}
		}
	}
	return UBoot(p), nil
}

func exists(fsys bootfs.FS, name string) (bool, error) {
	_, err := fsys.ReadFile(name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("read %s: %w", name, err)
}

// envFile is one environment file as read: its variables, whether it exists at all, and its bytes.
type envFile struct {
	name    string
	vars    map[string]string
	present bool
	raw     []byte
}

// readEnvFile reads and decodes name; a missing file is not an error but an envFile that is not present.
func readEnvFile(fsys bootfs.FS, name string, decode func([]byte) (map[string]string, error)) (envFile, error) {
	f := envFile{name: name, vars: map[string]string{}}
	data, err := fsys.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("read %s: %w", name, err)
	}
	if f.vars, err = decode(data); err != nil {
		return f, fmt.Errorf("%s: %w", name, err)
	}
	f.present, f.raw = true, data
	return f, nil
}

// holds reports whether the file already means set: each variable of set has its value there, or is absent
// (or the whole file is) and its default in defaults is that value. A Write leaves such a file alone.
func (f envFile) holds(set, defaults map[string]string) bool {
	for k, v := range set {
		cur, ok := f.vars[k]
		if !ok {
			cur, ok = defaults[k]
		}
		if !ok || cur != v {
			return false
		}
	}
	return true
}

// editGrubEnv is the encode of a grubenv-format file: the block as read (a new 1024-byte one when the file
// is missing), edited in place as grub-editenv edits it, so it keeps its size, order and other variables.
func (f envFile) editGrubEnv(set map[string]string) ([]byte, error) {
	e := NewGrubEnv()
	if f.present {
		var err error
		if e, err = ParseGrubEnv(f.raw); err != nil {
			return nil, err
		}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if cur, ok := e.Get(k); ok && cur == set[k] {
			continue
		}
		if err := e.Set(k, set[k]); err != nil {
			return nil, err
		}
	}
	return e.Bytes(), nil
}

// writeGrubEnv replaces the grubenv-format file f was read from with its variables updated by set.
func (f envFile) writeGrubEnv(fsys bootfs.FS, set map[string]string) error {
	data, err := f.editGrubEnv(set)
	if err != nil {
		return fmt.Errorf("%s: %w", f.name, err)
	}
	if err := fsys.WriteFile(f.name, data, time.Now()); err != nil {
		return fmt.Errorf("write %s: %w", f.name, err)
	}
	return nil
}

// write replaces the file f was read from with its variables updated by set, encoded by encode.
func (f envFile) write(fsys bootfs.FS, set map[string]string, encode func(map[string]string) ([]byte, error)) error {
	vars := maps.Clone(f.vars)
	maps.Copy(vars, set)
	data, err := encode(vars)
	if err != nil {
		return fmt.Errorf("%s: %w", f.name, err)
	}
	if err := fsys.WriteFile(f.name, data, time.Now()); err != nil {
		return fmt.Errorf("write %s: %w", f.name, err)
	}
	return nil
}

// parseDecimal reads a non-negative decimal number written the one way strconv.Itoa writes it: no sign or
// leading zeros, so that the value a bootloader script compares as a string is the value read. Blanks
// around it are ignored, as balenaOS's shell scripts ignore them (they expand values unquoted: its
// rollback-stop writes "bootcount=0 ", which they read as 0).
func parseDecimal(s string) (int, bool) {
	s = strings.Trim(s, " \t")
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}

// flag reads upgrade_available: missing means 0, as in every bootloader's default environment.
func flag(f envFile) (bool, error) {
	v, ok := f.vars[varUpgrade]
	if !ok {
		return false, nil
	}
	switch strings.Trim(v, " \t") {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, fmt.Errorf("%s: %s=%q, want 0 or 1", f.name, varUpgrade, v)
}

// decimalCount reads a bootcount written in decimal; missing means 0.
func decimalCount(f envFile) (int, error) {
	v, ok := f.vars[varBootCount]
	if !ok {
		return 0, nil
	}
	n, ok := parseDecimal(v)
	if !ok {
		return 0, fmt.Errorf("%s: %s=%q, want a decimal count", f.name, varBootCount, v)
	}
	return n, nil
}

func formatFlag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// The variables the backends own.
const (
	varRoot      = "resin_root_part"
	varUpgrade   = "upgrade_available"
	varBootCount = "bootcount"
)
