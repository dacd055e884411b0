package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/inspect"
	"github.com/hostos/hostos/partition/disk"
)

func newInspectCmd() *cobra.Command {
	var asJSON, secrets bool
	cmd := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show the layout, device type, OS version and config.json of a balenaOS image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := disk.Open(args[0], false)
			if err != nil {
				return fmt.Errorf("image: %w", err)
			}
			defer d.Close()
			var opts []inspect.Option
			if secrets {
				opts = append(opts, inspect.WithSecrets())
			}
			r, err := inspect.Inspect(d, opts...)
			if r == nil {
				return err
			}
			// An invalid table is shown, marked, and still fails the command.
			if asJSON {
				if jerr := printSafeJSON(cmd.OutOrStdout(), r); jerr != nil {
					return jerr
				}
				return err
			}
			printReport(cmd.OutOrStdout(), r)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&secrets, "show-secrets", false, "do not redact apiKey, deviceApiKey and other secrets")
	return cmd
}

// printReport prints the report as text. Everything read from the image passes through terminalSafe:
// labels, os-release and config.json are input from anywhere and must not drive the terminal.
func printReport(w io.Writer, r *inspect.Report) {
	fmt.Fprintf(w, "image:           %s (%d MiB)\n", terminalSafe(r.Image), r.Size>>20)
	fmt.Fprintf(w, "partition table: %s, disk id %s\n", r.PartitionTable, terminalSafe(r.DiskID))
	if r.TableProblem != "" {
		fmt.Fprintf(w, "                 INVALID: %s\n", r.TableProblem)
	}
	fmt.Fprintf(w, "device type:     %s (%s)\n", orDash(r.DeviceType), orDash(r.Arch))
	fmt.Fprintf(w, "os:              %s %s (from %s)\n", orDash(r.OSName), orDash(r.OSVersion), orDash(r.OSReleaseFrom))
	fp := "absent"
	switch {
	case r.Fingerprint.Verified:
		fp = "verified"
	case r.Fingerprint.Present:
		fp = "MISMATCH: " + r.Fingerprint.Problem
	}
	fmt.Fprintf(w, "fingerprint:     %s\n", fp)
	if h := r.BootHealth; h != nil {
		if h.Clean() {
			fmt.Fprintf(w, "boot fs:         FAT%d, clean\n", h.Bits)
		} else {
			fmt.Fprintf(w, "boot fs:         FAT%d, %d problems (hostos repair %s fixes what is safe):\n", h.Bits, len(h.Findings), terminalSafe(r.Image))
			for _, f := range h.Findings {
				fmt.Fprintf(w, "  %s\n", terminalSafe(f.Message))
			}
		}
	}
	fmt.Fprintf(w, "partitions:\n  %-3s %-14s %-6s %12s %12s\n", "#", "label", "fs", "start", "size")
	for _, p := range r.Partitions {
		boot := ""
		if p.Number == r.BootPartition {
			boot = "  (boot)"
		}
		fmt.Fprintf(w, "  %-3d %-14s %-6s %12d %12d%s\n", p.Number, orDash(p.Label), orDash(p.Filesystem), p.Start, p.Size, boot)
	}
	if pl := r.Preloaded; pl != nil {
		printPreloaded(w, pl)
	}
	if r.Config != nil {
		fmt.Fprintln(w, "config.json:")
		for _, k := range r.Config.Keys() {
			v, _ := r.Config.GetPath(k)
			fmt.Fprintf(w, "  %s: %s\n", terminalSafe(k), jsonTerminalSafe(config.EncodeValue(v)))
		}
	}
}

// orDash is s made terminal-safe, or "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return terminalSafe(s)
}

// printPreloaded prints the apps and engine images on the data partition.
func printPreloaded(w io.Writer, pl *inspect.Preloaded) {
	fmt.Fprintln(w, "preloaded:")
	if pl.Problem != "" {
		fmt.Fprintf(w, "  PROBLEM: %s\n", terminalSafe(pl.Problem))
	}
	for _, a := range pl.Apps {
		fmt.Fprintf(w, "  app %s (%s), release %s\n", terminalSafe(a.Name), terminalSafe(a.UUID), terminalSafe(a.Release))
		for _, s := range a.Services {
			img := "NOT IN THE ENGINE STORE"
			if s.ImageID != "" {
				img = fmt.Sprintf("%s, %d MiB", shortID(s.ImageID), s.Size>>20)
			}
			fmt.Fprintf(w, "    %-16s %s (%s)\n", terminalSafe(s.Name), terminalSafe(s.Image), img)
		}
	}
	for _, i := range pl.Images {
		fmt.Fprintf(w, "  image %s  %s  %d bytes\n", terminalSafe(i.Reference), shortID(i.ID), i.Size)
	}
}
