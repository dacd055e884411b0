package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

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
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			printReport(cmd.OutOrStdout(), r)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&secrets, "show-secrets", false, "do not redact apiKey, deviceApiKey and other secrets")
	return cmd
}

func printReport(w io.Writer, r *inspect.Report) {
	fmt.Fprintf(w, "image:           %s (%d MiB)\n", r.Image, r.Size>>20)
	fmt.Fprintf(w, "partition table: %s, disk id %s\n", r.PartitionTable, r.DiskID)
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
	fmt.Fprintf(w, "partitions:\n  %-3s %-14s %-6s %12s %12s\n", "#", "label", "fs", "start", "size")
	for _, p := range r.Partitions {
		boot := ""
		if p.Number == r.BootPartition {
			boot = "  (boot)"
		}
		fmt.Fprintf(w, "  %-3d %-14s %-6s %12d %12d%s\n", p.Number, orDash(p.Label), orDash(p.Filesystem), p.Start, p.Size, boot)
	}
	if r.Config != nil {
		fmt.Fprintln(w, "config.json:")
		for _, k := range r.Config.Keys() {
			v, _ := r.Config.GetPath(k)
			b, _ := json.Marshal(v)
			fmt.Fprintf(w, "  %s: %s\n", k, strings.TrimSpace(string(b)))
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
