package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/bootfs"
	"github.com/hostos/hostos/rootfs/fat"
)

// repairResult is what repair prints with --json.
type repairResult struct {
	Partition int        `json:"partition"`
	DryRun    bool       `json:"dryRun"`
	Before    fat.Report `json:"before"`
	After     fat.Report `json:"after"`
	Clean     bool       `json:"clean"`
}

func newRepairCmd() *cobra.Command {
	var asJSON, dryRun bool
	cmd := &cobra.Command{
		Use:   "repair IMAGE",
		Short: "Check the boot partition's FAT file system as fsck.vfat does and repair what is safe to repair",
		Long: `Check the boot partition's FAT file system (found as balena's tools find it) as fsck.vfat -n does, and
repair what can be repaired without choosing between two files' data: orphan long names, broken or looping
chains (cut at the last good cluster, the file's size with it), sizes that disagree with their chains,
lost clusters, FAT copies that differ, the FAT32 free count. Cross-linked files are reported, not
repaired: copy both off and decide. Every step is ordered so that a power cut leaves the file system no
worse. Exit code 0 when the file system is clean afterwards (with --dry-run: already), 1 otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := disk.Open(args[0], !dryRun)
			if err != nil {
				return fmt.Errorf("image: %w", err)
			}
			defer d.Close()
			boot, err := bootfs.Locate(d, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			res := repairResult{Partition: boot.Number, DryRun: dryRun}
			if dryRun {
				fsys, err := fat.Open(d, boot.Start, boot.Size)
				if err == nil {
					res.Before, err = fsys.Check()
				}
				res.After = res.Before
				if err != nil {
					return fmt.Errorf("%s: boot partition %d: %w", args[0], boot.Number, err)
				}
			} else {
				res.Before, res.After, err = fat.Repair(d, boot.Start, boot.Size)
				if err != nil {
					return fmt.Errorf("%s: boot partition %d: %w", args[0], boot.Number, err)
				}
				if err := d.Sync(); err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
			}
			res.Clean = res.After.Clean()
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			} else {
				printRepair(cmd.OutOrStdout(), res)
			}
			if !res.Clean {
				what := "left"
				if dryRun {
					what = "found"
				}
				return fmt.Errorf("%s: boot partition %d: %d problems %s (%s): %w", args[0], boot.Number, len(res.After.Findings), what,
					terminalSafe(res.After.Findings[0].Message), fat.ErrNotRepaired)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only check: open the image read-only and write nothing")
	return cmd
}

// printRepair prints what repair found and what is left; names read from the image pass through terminalSafe.
func printRepair(w io.Writer, r repairResult) {
	b := r.Before
	fmt.Fprintf(w, "boot partition %d: fat%d, %d clusters (%d free), %d files, %d directories\n", r.Partition, b.Bits, b.Clusters, b.Free, b.Files, b.Dirs)
	if b.Clean() {
		fmt.Fprintln(w, "clean")
		return
	}
	fmt.Fprintln(w, "found:")
	for _, f := range b.Findings {
		fmt.Fprintf(w, "  %s\n", terminalSafe(f.Message))
	}
	switch {
	case r.DryRun:
		fmt.Fprintln(w, "nothing written (--dry-run)")
	case r.After.Clean():
		fmt.Fprintln(w, "repaired: clean")
	default:
		fmt.Fprintln(w, "left, not safe to repair automatically:")
		for _, f := range r.After.Findings {
			hint := ""
			if f.Kind == fat.CrossLink {
				hint = " (one of the two holds the other's data: copy both off, delete the wrong one, or run fsck.vfat)"
			}
			fmt.Fprintf(w, "  %s%s\n", terminalSafe(f.Message), hint)
		}
	}
}
