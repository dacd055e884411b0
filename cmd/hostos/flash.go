package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hostos/hostos/hostapp/flash"
)

func newFlashCmd() *cobra.Command {
	var force, noVerify, asJSON, quiet bool
	var bmap string
	cmd := &cobra.Command{
		Use:   "flash IMAGE DEVICE",
		Short: "Write an image to a card, a USB stick or a file: only its data, verified",
		Long: `Write IMAGE (raw, or compressed with zstd, xz, gzip or zip: decompressed on the fly) to DEVICE, a block
device or a regular file. Only mapped blocks are written: those of the block map next to the image
(IMAGE.bmap, or its name without the compression suffix plus .bmap), else a raw image's data (its holes are
skipped), else a compressed image's blocks that are not all zero. Then the device is synced, its cached
pages dropped, and every written range read back and compared with the image (--no-verify skips this).
A device that is mounted, holds the running system or is not removable is refused unless --force.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pr := newProgress(quiet || asJSON)
			opts := []flash.Option{flash.WithProgress(pr.update)}
			if force {
				opts = append(opts, flash.WithForce())
			}
			if noVerify {
				opts = append(opts, flash.WithoutVerify())
			}
			if bmap != "" {
				opts = append(opts, flash.WithBmap(bmap))
			}
			res, err := flash.Flash(cmd.Context(), args[0], args[1], opts...)
			if err != nil {
				if errors.Is(err, flash.ErrMounted) || errors.Is(err, flash.ErrSystem) || errors.Is(err, flash.ErrFixedDisk) ||
					errors.Is(err, flash.ErrUnchecked) {
					return fmt.Errorf("flash: %w (--force writes anyway)", err)
				}
				return fmt.Errorf("flash: %w", err)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			verified := "not verified"
			if res.Verified {
				verified = "verified"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "flashed %s to %s: %d of %d bytes in %d ranges (map: %s), %s\n",
				res.Image, res.Device, res.Written, res.ImageSize, res.Ranges, res.Map, verified)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&force, "force", false, "write to a device that is mounted, holds the running system or is not removable")
	f.BoolVar(&noVerify, "no-verify", false, "do not read back and check what was written")
	f.StringVar(&bmap, "bmap", "", "the block map to use instead of the one next to the image")
	f.BoolVar(&asJSON, "json", false, "print a JSON summary")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bars")
	return cmd
}
