package update

import (
	"context"
	"fmt"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/health"
)

// Status is what `hostos status` reports.
type Status struct {
	Booted   bootenv.Slot            `json:"booted"`
	Inactive bootenv.Slot            `json:"inactive"`
	Env      bootenv.Env             `json:"bootloader"`
	Backend  string                  `json:"backend"`
	Pending  bool                    `json:"pending"`
	Versions map[bootenv.Slot]string `json:"versions"`
	Crumbs   []string                `json:"breadcrumbs"`
}

// Status reads the A/B state.
func (tg *Target) Status() (Status, error) {
	st, err := tg.Read()
	if err != nil {
		return Status{}, err
	}
	s := Status{Booted: st.Booted, Inactive: st.Booted.Other(), Env: st.Env, Backend: tg.Env.Name(), Pending: st.Pending(),
		Versions: map[bootenv.Slot]string{}, Crumbs: []string{}}
	for _, slot := range []bootenv.Slot{bootenv.SlotA, bootenv.SlotB} {
		s.Versions[slot] = tg.SlotVersion(slot)
	}
	for _, c := range Breadcrumbs {
		if st.Crumbs[c] {
			s.Crumbs = append(s.Crumbs, c)
		}
	}
	return s, nil
}

// Commit makes the running, pending slot permanent.
func (tg *Target) Commit() (Step, error) {
	st, err := tg.Read()
	if err != nil {
		return Step{}, err
	}
	step, err := Commit(st)
	if err != nil {
		return step, err
	}
	return step, tg.Apply(step)
}

// Rollback points the bootloader at the other slot for good, after checking it holds a system.
func (tg *Target) Rollback() (Step, error) {
	st, err := tg.Read()
	if err != nil {
		return Step{}, err
	}
	step := Rollback(st)
	if tg.SlotVersion(step.Env.Root) == "" {
		return Step{}, fmt.Errorf("slot %s holds no complete system (no /etc/os-release): not rolling back", step.Env.Root)
	}
	return step, tg.Apply(step)
}

// RollbackAltboot runs early at boot: when the bootloader fell back to the old slot, make that final.
// ok is false when there was nothing to do.
func (tg *Target) RollbackAltboot() (step Step, ok bool, err error) {
	st, err := tg.Read()
	if err != nil {
		return Step{}, false, err
	}
	step, ok = Altboot(st)
	if !ok {
		return step, false, nil
	}
	return step, true, tg.Apply(step)
}

// HealthResult is what `hostos health` did.
type HealthResult struct {
	Pending bool            `json:"pending"`
	Checks  []health.Result `json:"checks"`
	Step    *Step           `json:"step,omitempty"`
}

// Health runs the checks while an update is pending in the running slot: all pass, commit; one fails,
// switch back and ask for a reboot (rollback-health-triggered, or rollback-health-failed when even the
// switch back fails).
func (tg *Target) Health(ctx context.Context, checks health.Checks, log func(string)) (HealthResult, error) {
	st, err := tg.Read()
	if err != nil {
		return HealthResult{}, err
	}
	if !st.Pending() || st.Booted != st.Env.Root {
		return HealthResult{}, nil // nothing on trial here (rollback-altboot handles the fallback case)
	}
	res := HealthResult{Pending: true}
	results, err := health.Run(ctx, checks, log)
	res.Checks = results
	if err != nil {
		return res, err
	}
	healthy := true
	for _, r := range results {
		healthy = healthy && r.Passed
	}
	if healthy {
		step, err := Commit(st)
		if err != nil {
			return res, err
		}
		res.Step = &step
		return res, tg.Apply(step)
	}
	step, err := HealthRollback(st)
	if err != nil {
		return res, err
	}
	res.Step = &step
	if err := tg.Apply(step); err != nil {
		_ = tg.State.Touch(HealthFailed)
		return res, fmt.Errorf("health checks failed and switching back failed: %w", err)
	}
	return res, nil
}
