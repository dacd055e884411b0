package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/hostapp/health"
	"github.com/hostos/hostos/hostapp/lock"
	"github.com/hostos/hostos/hostapp/update"
	"github.com/hostos/hostos/hostapp/update/source"
	"github.com/hostos/hostos/partition/disk"
)

// targetFlags choose what is updated: a disk image (--image), or the running device.
type targetFlags struct {
	image, booted, bootDir, stateDir string
}

func (f *targetFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "work on the disk image `IMG` instead of the running device")
	fl.StringVar(&f.booted, "booted", "", "with --image: the slot (A or B) taken as running; default: the one the bootloader points at")
	fl.StringVar(&f.bootDir, "boot-dir", "/mnt/boot", "on a device: where the boot partition is mounted")
	fl.StringVar(&f.stateDir, "state-dir", "/mnt/state", "on a device: where the state partition is mounted")
}

// open opens the target; close releases it.
func (f *targetFlags) open(writable bool) (tg *update.Target, closeFn func() error, err error) {
	if f.booted != "" && f.image == "" {
		return nil, nil, usageError{errors.New("--booted needs --image")}
	}
	if f.image == "" {
		tg, err := update.OpenDevice(update.DeviceOptions{BootDir: f.bootDir, StateDir: f.stateDir, Writable: writable})
		if err != nil {
			return nil, nil, err
		}
		return tg, tg.Disk.Close, nil
	}
	d, err := disk.Open(f.image, writable)
	if err != nil {
		return nil, nil, fmt.Errorf("image: %w", err)
	}
	tg, err = update.OpenImage(d, bootenv.Slot(f.booted))
	if err != nil {
		d.Close()
		return nil, nil, fmt.Errorf("%s: %w", f.image, err)
	}
	return tg, d.Close, nil
}

// openLocked opens the target for writing under the writers' lock; done releases both. An image (and
// the device's disk) is locked by disk.Open itself; on a device the mounted boot partition is locked too,
// the lock configure --boot-dir takes.
func (f *targetFlags) openLocked() (*update.Target, func(), error) {
	release := func() {}
	if f.image == "" {
		l, err := lock.Target(f.bootDir)
		if err != nil {
			return nil, nil, err
		}
		release = func() { l.Release() }
	}
	tg, closeFn, err := f.open(true)
	if err != nil {
		release()
		return nil, nil, err
	}
	return tg, func() { closeFn(); release() }, nil
}

func newUpdateCmd() *cobra.Command {
	var tf targetFlags
	var keys []string
	var keysDir, tempDir string
	var reboot, force, asJSON, quiet bool
	var regAuth string
	cmd := &cobra.Command{
		Use:   "update SOURCE",
		Short: "Install a new OS into the inactive root slot and boot it next, on trial",
		Long: `Install a new OS into the inactive A/B root slot: SOURCE is a hostos bundle (full, or a delta made
with bundle create --delta-from, assembled from the running slot), an OCI image (layout
directory, docker save archive, or docker://registry/repo:tag), or a root filesystem tar; a file, - for
stdin, or an http(s) URL, streamed. The payload is verified after writing, the new OS's boot files are
installed (config.json, splash, system-connections and env files are kept), and the bootloader boots the
new slot next with boot counting. hostos health commits it, or the bootloader and rollback-altboot fall
back to the old slot. With public keys configured (--key, or *.pub in --keys-dir) only signed bundles
are accepted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reboot && tf.image != "" {
				return usageError{errors.New("--reboot is for a running device, not --image")}
			}
			pubs, err := loadKeys(keys, keysDir)
			if err != nil {
				return err
			}
			auth, err := registryAuth(regAuth)
			if err != nil {
				return err
			}
			tg, done, err := tf.openLocked()
			if err != nil {
				return err
			}
			defer done()
			epoch, err := sourceDateEpoch()
			if err != nil {
				return err
			}
			p := newProgress(quiet || asJSON)
			slot := tg.Slots[tg.Booted.Other()]
			running := tg.Slots[tg.Booted] // a delta bundle's base
			if tempDir == "" && tf.image != "" {
				tempDir = filepath.Dir(tf.image)
			}
			counter, hostapp := tg.HostappLayout() // balenaOS's slots: write the new one the same way
			payload, err := source.Open(cmd.Context(), args[0], source.Options{
				Keys: pubs, DeviceType: tg.DeviceType, RootSize: slot.Size, TempDir: tempDir, Progress: p.update,
				RegistryAuth: auth, Base: io.NewSectionReader(tg.Disk, running.Start, running.Size), BaseSize: running.Size,
				Hostapp: hostapp, HostappCounter: counter,
			})
			if err != nil {
				return err
			}
			defer payload.Close()
			res, err := tg.Update(cmd.Context(), payload, update.Options{Force: force, TempDir: tempDir, Time: epoch, Progress: p.update})
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			} else {
				if payload.BaseVersion != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "delta from %s: %d KiB of %d MiB transferred (%.2f %%), the rest read from slot %s\n",
						payload.BaseVersion, (payload.Transferred+1023)>>10, payload.Size>>20, 100*float64(payload.Transferred)/float64(max(payload.Size, 1)), res.From)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "slot %s now holds %s (%d MiB, verified), %d boot files updated; it boots next, on trial\n",
					res.To, orDash(res.Version), res.Bytes>>20, len(res.Boot))
			}
			if reboot {
				return rebootDevice(cmd.Context(), force)
			}
			return nil
		},
	}
	tf.add(cmd)
	fl := cmd.Flags()
	fl.StringArrayVar(&keys, "key", nil, "public key `FILE` (PEM) a bundle must be signed with; repeatable")
	fl.StringVar(&keysDir, "keys-dir", "/etc/hostos/keys", "directory of *.pub keys a bundle must be signed with (when it holds any)")
	fl.StringVar(&tempDir, "temp-dir", "", "where to stage a tar or OCI source and the boot files (default: beside --image, or the system temp dir)")
	fl.StringVar(&regAuth, "registry-auth", "", "registry credentials: `USER:PASSWORD`, or a FILE holding that line (default: the docker config's, else anonymous)")
	fl.BoolVar(&reboot, "reboot", false, "reboot when done, after application update locks are released")
	fl.BoolVar(&force, "force", false, "install even with an update pending; with --reboot, do not wait for update locks")
	fl.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fl.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

// loadKeys reads the --key files and the *.pub files of dir (a missing dir holds none).
func loadKeys(files []string, dir string) ([]ed25519.PublicKey, error) {
	if dir != "" {
		more, err := filepath.Glob(filepath.Join(dir, "*.pub"))
		if err != nil {
			return nil, err
		}
		files = append(files, more...)
	}
	var keys []ed25519.PublicKey
	for _, f := range files {
		b, err := disk.ReadInput(f, "key", bundle.MaxKeyBytes)
		if err != nil {
			return nil, err
		}
		k, err := bundle.ParsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", f, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// rebootDevice waits for balena application update locks (unless force) and reboots.
func rebootDevice(ctx context.Context, force bool) error {
	if !force {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		if err := lock.WaitAppLocks(wctx, "/tmp/balena-supervisor/services/*/*/updates.lock", 5*time.Second, nil); err != nil {
			return fmt.Errorf("not rebooting: %w (the update is installed; reboot later or use --force)", err)
		}
	}
	if out, err := exec.CommandContext(ctx, "systemctl", "reboot").CombinedOutput(); err != nil {
		return fmt.Errorf("reboot: %v: %s", err, out)
	}
	return nil
}

func newStatusCmd() *cobra.Command {
	var tf targetFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the A/B slots, their OS versions, the bootloader variables and the breadcrumbs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tg, closeFn, err := tf.open(false)
			if err != nil {
				return err
			}
			defer closeFn()
			s, err := tg.Status()
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), s)
			}
			w := cmd.OutOrStdout()
			for _, slot := range []bootenv.Slot{bootenv.SlotA, bootenv.SlotB} {
				mark := ""
				if slot == s.Booted {
					mark = "  (running)"
				}
				fmt.Fprintf(w, "slot %s:      %s%s\n", slot, orDash(s.Versions[slot]), mark)
			}
			fmt.Fprintf(w, "bootloader:  %s: root %s, upgrade_available=%t, bootcount=%d\n", s.Backend, s.Env.Root, s.Env.UpgradeAvailable, s.Env.BootCount)
			pending := "no"
			if s.Pending {
				pending = "yes, slot " + string(s.Env.Root) + " on trial"
			}
			fmt.Fprintf(w, "pending:     %s\n", pending)
			fmt.Fprintf(w, "breadcrumbs: %v\n", s.Crumbs)
			return nil
		},
	}
	tf.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// stepCmd builds commit, rollback and rollback-altboot: open the target, take one step, print it.
func stepCmd(use, short string, run func(tg *update.Target) (update.Step, bool, error)) *cobra.Command {
	var tf targetFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tg, done, err := tf.openLocked()
			if err != nil {
				return err
			}
			defer done()
			step, did, err := run(tg)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{"changed": did, "step": step})
			}
			if !did {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to do")
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), step.What)
			if step.Reboot {
				fmt.Fprintln(cmd.OutOrStdout(), "reboot requested")
			}
			return nil
		},
	}
	tf.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newCommitCmd() *cobra.Command {
	return stepCmd("commit", "Make the running, pending update permanent", func(tg *update.Target) (update.Step, bool, error) {
		s, err := tg.Commit()
		return s, err == nil, err
	})
}

func newRollbackCmd() *cobra.Command {
	return stepCmd("rollback", "Point the bootloader back at the other slot for good", func(tg *update.Target) (update.Step, bool, error) {
		s, err := tg.Rollback()
		return s, err == nil, err
	})
}

func newRollbackAltbootCmd() *cobra.Command {
	return stepCmd("rollback-altboot", "Early at boot: when the bootloader fell back to the old slot, make it final",
		func(tg *update.Target) (update.Step, bool, error) { return tg.RollbackAltboot() })
}

func newHealthCmd() *cobra.Command {
	var tf targetFlags
	var checksFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "health",
		Short: "While an update is on trial, run the health checks: commit when all pass, else switch back",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			checks := health.Default()
			b, err := disk.ReadInput(checksFile, "health checks", health.MaxChecksBytes)
			switch {
			case err == nil:
				if checks, err = health.Parse(b, checksFile); err != nil {
					return err
				}
			case errors.Is(err, os.ErrNotExist) && !cmd.Flags().Changed("checks"):
			default:
				return err
			}
			tg, done, err := tf.openLocked()
			if err != nil {
				return err
			}
			defer done()
			res, err := tg.Health(cmd.Context(), checks, func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), s) })
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			switch {
			case !res.Pending:
				fmt.Fprintln(cmd.OutOrStdout(), "no update on trial in the running slot: nothing to check")
			case res.Step != nil:
				fmt.Fprintln(cmd.OutOrStdout(), res.Step.What)
				if res.Step.Reboot {
					fmt.Fprintln(cmd.OutOrStdout(), "reboot requested")
				}
			}
			return nil
		},
	}
	tf.add(cmd)
	cmd.Flags().StringVar(&checksFile, "checks", "/etc/hostos/health.toml", "health checks `FILE` (TOML)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
