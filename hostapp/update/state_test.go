package update

import (
	"errors"
	"reflect"
	"testing"

	"github.com/hostos/hostos/hostapp/bootenv"
)

const (
	a = bootenv.SlotA
	b = bootenv.SlotB
)

func st(root bootenv.Slot, upgrade bool, count int, booted bootenv.Slot) State {
	return State{Env: bootenv.Env{Root: root, UpgradeAvailable: upgrade, BootCount: count}, Booted: booted}
}

// TestDecisions walks every decision through the states it can meet.
func TestDecisions(t *testing.T) {
	install := Install(st(a, false, 0, a), b)
	if install.Env != (bootenv.Env{Root: b, UpgradeAvailable: true}) ||
		!reflect.DeepEqual(install.Touch, []string{HealthBreadcrumb, AltbootBreadcrumb}) ||
		!reflect.DeepEqual(install.Remove, []string{HealthTriggered, AltbootTriggered, HealthFailed}) {
		t.Errorf("install: %+v", install)
	}

	if s, err := Commit(st(b, true, 1, b)); err != nil || s.Env != (bootenv.Env{Root: b}) || !reflect.DeepEqual(s.Remove, []string{HealthVariables, AltbootBreadcrumb, HealthBreadcrumb, HealthFailed}) {
		t.Errorf("commit: %+v %v", s, err)
	}
	if _, err := Commit(st(b, false, 0, b)); !errors.Is(err, ErrNotPending) {
		t.Errorf("commit with nothing pending: %v", err)
	}
	if _, err := Commit(st(b, true, 2, a)); err == nil {
		t.Error("commit accepted while the old slot runs")
	}

	if s, err := HealthRollback(st(b, true, 1, b)); err != nil || s.Env != (bootenv.Env{Root: a}) || !s.Reboot ||
		!reflect.DeepEqual(s.Touch, []string{HealthTriggered}) {
		t.Errorf("health rollback: %+v %v", s, err)
	}
	if _, err := HealthRollback(st(a, false, 0, a)); !errors.Is(err, ErrNotPending) {
		t.Errorf("health rollback with nothing pending: %v", err)
	}

	for _, c := range []struct {
		s      State
		ok     bool
		env    bootenv.Env
		reboot bool
	}{
		{st(a, false, 0, a), false, bootenv.Env{}, false},                              // nothing pending
		{st(b, true, 0, b), false, bootenv.Env{}, false},                               // on trial, count already clear
		{st(b, true, 1, b), true, bootenv.Env{Root: b, UpgradeAvailable: true}, false}, // on trial: clear the count
		{st(b, true, 2, a), true, bootenv.Env{Root: a}, true},                          // fell back: make it final
		{st(a, true, 3, b), true, bootenv.Env{Root: b}, true},                          // the same from B to A
	} {
		s, ok := Altboot(c.s)
		if ok != c.ok || ok && (s.Env != c.env || s.Reboot != c.reboot) {
			t.Errorf("altboot %+v: %+v %v", c.s, s, ok)
		}
		if ok && c.reboot && !reflect.DeepEqual(s.Touch, []string{AltbootTriggered}) {
			t.Errorf("altboot %+v touches %v", c.s, s.Touch)
		}
	}

	// Nothing pending but an ended update's breadcrumbs present (an update cut off before its switch, a commit
	// before their removal): they go, the environment and the triggered ones stay.
	stale := st(a, false, 0, a)
	stale.Crumbs = map[string]bool{HealthBreadcrumb: true, AltbootBreadcrumb: true, HealthVariables: true, HealthTriggered: true}
	if s, ok := Altboot(stale); !ok || s.Env != stale.Env || s.Reboot || len(s.Touch) != 0 ||
		!reflect.DeepEqual(s.Remove, []string{HealthVariables, AltbootBreadcrumb, HealthBreadcrumb}) {
		t.Errorf("altboot with stale breadcrumbs: %+v %v", s, ok)
	}
	kept := st(a, false, 0, a)
	kept.Crumbs = map[string]bool{HealthTriggered: true, AltbootTriggered: true}
	if s, ok := Altboot(kept); ok {
		t.Errorf("altboot removes what a rollback reported: %+v", s)
	}

	if s := Rollback(st(b, true, 1, b)); s.Env != (bootenv.Env{Root: a}) {
		t.Errorf("manual rollback while pending: %+v", s)
	}
	if s := Rollback(st(b, false, 0, b)); s.Env != (bootenv.Env{Root: a}) {
		t.Errorf("manual rollback after commit: %+v", s)
	}
}
