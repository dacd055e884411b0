package update

import (
	"strconv"
	"strings"

	"github.com/hostos/hostos/rootfs/hostappfs"
)

// HostappLayout tells whether the running slot holds its OS in balenaOS's hostapp layout
// (rootfs/hostappfs), in which case an update must write the new slot the same way, for balenaOS's
// initramfs (mobynit) to boot it and balena's scripts to find it; counter is then the update counter the
// new slot gets, as hostapp-update counts: the running slot's plus one.
func (tg *Target) HostappLayout() (counter int, ok bool) {
	p := tg.Slots[tg.Booted]
	o, err := hostappfs.OpenSlot(tg.Disk, p.Start, p.Size)
	if err != nil || o.Layout() != hostappfs.Hostapp {
		return 0, false
	}
	counter = 1
	if b, err := o.Slot().ReadFile("/counter"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 0 {
			counter = n + 1
		}
	}
	return counter, true
}
