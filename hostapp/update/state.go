// Package update is the A/B host OS updater: it writes a new root filesystem into the inactive slot,
// switches the bootloader with boot counting, and commits or rolls back after the new system boots.
//
// The decisions are pure functions on a State value (this file); Target carries them out on a disk image
// or a running device, in an order that leaves a bootable, complete system after a power loss at any
// write.
package update

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hostos/hostos/hostapp/bootenv"
)

// Breadcrumbs: empty files in the state partition root, with balenaOS's names.
const (
	HealthBreadcrumb  = "rollback-health-breadcrumb"
	AltbootBreadcrumb = "rollback-altboot-breadcrumb"
	HealthTriggered   = "rollback-health-triggered"
	AltbootTriggered  = "rollback-altboot-triggered"
	HealthFailed      = "rollback-health-failed"
	// HealthVariables is not empty: balenaOS's hostapp-update writes BALENAOS_ROLLBACK_VPNONLINE=1 or 0 in
	// it (whether the VPN was up before the update), and its rollback-tests fail the new OS when the VPN
	// was up and has not come back.
	HealthVariables = "rollback-health-variables"
)

// Breadcrumbs lists every breadcrumb name, for status.
var Breadcrumbs = []string{HealthBreadcrumb, AltbootBreadcrumb, HealthTriggered, AltbootTriggered, HealthFailed, HealthVariables}

// stopped are the files balenaOS's rollback-stop removes when an update ends, by a commit or a rollback.
var stopped = []string{HealthVariables, AltbootBreadcrumb, HealthBreadcrumb, HealthFailed}

// healthVariables is the content of HealthVariables, as balenaOS's hostapp-update writes it.
func healthVariables(vpnOnline bool) []byte {
	if vpnOnline {
		return []byte("BALENAOS_ROLLBACK_VPNONLINE=1\n")
	}
	return []byte("BALENAOS_ROLLBACK_VPNONLINE=0\n")
}

// State is what the A/B decisions depend on: the bootloader's variables, the slot running now, and the
// breadcrumbs present.
type State struct {
	Env    bootenv.Env
	Booted bootenv.Slot
	Crumbs map[string]bool
	// VPNOnline says the device's VPN is connected now (balenaOS's /run/openvpn/vpn_status/active).
	VPNOnline bool
}

// Pending reports whether an update waits for its commit.
func (s State) Pending() bool { return s.Env.UpgradeAvailable }

// Step is the outcome of a decision: the bootloader variables to write, breadcrumbs to create and to
// remove, and whether the device should reboot.
type Step struct {
	Env    bootenv.Env
	Touch  []string
	Remove []string
	// Put are state files to write with content.
	Put map[string][]byte `json:"-"`
	// RestoreBoot: the step goes back to the slot an update replaced, and the boot files that update
	// replaced come back with it (as balenaOS's rollbacks run the old OS's boot-file hook).
	RestoreBoot bool `json:"restoreBoot,omitempty"`
	Reboot      bool
	// What says in a few words what the step does, for the user.
	What string
}

// ErrPending means an update already waits for its commit.
var ErrPending = errors.New("an update is pending")

// ErrNotPending means there is no update to commit or roll back.
var ErrNotPending = errors.New("no update is pending")

// Install is the switch after a new OS was written to slot to: boot it next with boot counting, and
// leave the breadcrumbs that let the next boot find out how it went.
func Install(s State, to bootenv.Slot) Step {
	return Step{
		Env:    bootenv.Env{Root: to, UpgradeAvailable: true, BootCount: 0},
		Touch:  []string{HealthBreadcrumb, AltbootBreadcrumb},
		Remove: []string{HealthTriggered, AltbootTriggered, HealthFailed},
		Put:    map[string][]byte{HealthVariables: healthVariables(s.VPNOnline)},
		What:   fmt.Sprintf("boot slot %s next, on trial", to),
	}
}

// Commit makes the running, pending slot permanent.
func Commit(s State) (Step, error) {
	switch {
	case !s.Pending():
		return Step{}, ErrNotPending
	case s.Booted != s.Env.Root:
		return Step{}, fmt.Errorf("running slot %s but the update is in slot %s: the new system did not boot (run rollback-altboot)", s.Booted, s.Env.Root)
	}
	return Step{
		Env:    bootenv.Env{Root: s.Env.Root},
		Remove: stopped,
		What:   fmt.Sprintf("slot %s committed", s.Env.Root),
	}, nil
}

// HealthRollback is the decision after the new slot booted but failed its health checks: go back to the
// other slot for good and reboot into it.
func HealthRollback(s State) (Step, error) {
	if !s.Pending() {
		return Step{}, ErrNotPending
	}
	back := s.Env.Root.Other()
	return Step{
		Env:         bootenv.Env{Root: back},
		Touch:       []string{HealthTriggered},
		Remove:      stopped,
		RestoreBoot: true,
		Reboot:      true,
		What:        fmt.Sprintf("unhealthy: back to slot %s", back),
	}, nil
}

// Altboot is the early-boot decision. When an update is pending but the old slot booted (the bootloader
// hit its boot limit), switch back to the running slot for good and ask for one reboot. When the slot on
// trial itself came up, clear the boot count: the bootloader counts boots that never reach this point,
// and a clean reboot before the health checks end must not count as a failed boot. ok is false when
// there is nothing to do.
//
// With nothing pending, breadcrumbs of an update that ended (balenaOS's rollback-stop removes them) are
// stale: an update cut off between leaving them and switching the bootloader, or a commit cut off between
// the switch and their removal. They are removed, so that no rollback service acts on them.
func Altboot(s State) (step Step, ok bool) {
	if !s.Pending() {
		var stale []string
		for _, c := range stopped {
			if s.Crumbs[c] {
				stale = append(stale, c)
			}
		}
		if len(stale) == 0 {
			return Step{}, false
		}
		return Step{
			Env:    s.Env,
			Remove: stale,
			What:   fmt.Sprintf("no update pending: the breadcrumbs of one that never switched removed (%s)", strings.Join(stale, ", ")),
		}, true
	}
	if s.Booted == s.Env.Root {
		if s.Env.BootCount == 0 {
			return Step{}, false
		}
		return Step{
			Env:  bootenv.Env{Root: s.Env.Root, UpgradeAvailable: true},
			What: fmt.Sprintf("slot %s came up: boot count cleared, health checks decide", s.Env.Root),
		}, true
	}
	return Step{
		Env:         bootenv.Env{Root: s.Booted},
		Touch:       []string{AltbootTriggered},
		Remove:      append([]string{HealthTriggered}, stopped...),
		RestoreBoot: true,
		Reboot:      true,
		What:        fmt.Sprintf("slot %s never came up: staying on slot %s", s.Env.Root, s.Booted),
	}, true
}

// Rollback is the manual rollback: with an update pending, back to the slot it replaces; otherwise to
// the other slot (the previous OS). The caller checks that the slot holds a complete system.
func Rollback(s State) Step {
	to := s.Env.Root.Other()
	st := Step{
		Env:         bootenv.Env{Root: to},
		Remove:      stopped,
		RestoreBoot: true,
		What:        fmt.Sprintf("rolled back to slot %s", to),
	}
	return st
}
