package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hostos/hostos/hostapp/build"
	"github.com/hostos/hostos/partition/disk"
)

func newBuildCmd() *cobra.Command {
	var (
		specPath, out, compress string
		bmap, asJSON, quiet     bool
	)
	cmd := &cobra.Command{
		Use:   "build [--spec FILE.toml] [-o OUT]",
		Short: "Assemble a balenaOS disk image from a build spec (default: the embedded demo)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var (
				spec *build.Spec
				err  error
			)
			if specPath == "" {
				spec, err = build.DefaultSpec()
			} else {
				var b []byte
				if b, err = disk.ReadInput(specPath, "spec", build.MaxSpecBytes); err != nil {
					return err
				}
				abs, aerr := filepath.Abs(specPath)
				if aerr != nil {
					return fmt.Errorf("spec: %w", aerr)
				}
				spec, err = build.ParseSpec(b, specPath, filepath.Dir(abs))
			}
			if err != nil {
				return err
			}
			switch compress {
			case "", "zst", "xz":
			default:
				return usageError{fmt.Errorf("--compress %q: want zst or xz", compress)}
			}
			pr := newProgress(quiet || asJSON)
			opts := []build.Option{build.WithProgress(pr.update)}
			epoch, err := sourceDateEpoch()
			if err != nil {
				return err
			}
			if !epoch.IsZero() {
				opts = append(opts, build.WithEpoch(epoch))
			}
			// Every output is checked before the work starts: none may be a device or an input.
			outs := []string{out}
			if bmap {
				outs = append(outs, out+".bmap")
			}
			for _, o := range outs {
				if err := disk.CheckOutput(o, spec.Inputs()...); err != nil {
					return err
				}
			}
			raw := out
			if compress != "" {
				raw = out + ".raw"
			}
			res, err := build.Build(cmd.Context(), spec, raw, opts...)
			if err != nil {
				return err
			}
			if bmap {
				if err := writeBmap(raw, out+".bmap", pr); err != nil {
					os.Remove(raw)
					return err
				}
			}
			if compress != "" {
				err := writeCompressed(cmd, raw, out, compress, pr)
				os.Remove(raw)
				if err != nil {
					return err
				}
				res.Output = out
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "built %s: %s %s, %s table, %d MiB, in %.2fs\n",
				res.Output, res.DeviceType, res.Version, res.PartitionTable, res.Size>>20, res.Seconds)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&specPath, "spec", "", "build spec (TOML); default: the embedded demo spec")
	f.StringVarP(&out, "output", "o", "hostos.img", "output image path")
	f.StringVar(&compress, "compress", "", "compress the image: zst or xz")
	f.BoolVar(&bmap, "bmap", false, "also write OUT.bmap (a block map for bmaptool copy)")
	f.BoolVar(&asJSON, "json", false, "print a JSON summary")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bars")
	return cmd
}

func writeBmap(img, dst string, pr *progress) error {
	o, err := disk.CreateOutput(dst, 0o644, img)
	if err != nil {
		return fmt.Errorf("bmap: %w", err)
	}
	defer o.Abort()
	if err := disk.Bmap(img, o, func(done, total int64) { pr.update("bmap", done, total) }); err != nil {
		return fmt.Errorf("bmap: %w", err)
	}
	return o.Commit()
}

func writeCompressed(cmd *cobra.Command, raw, out, algo string, pr *progress) error {
	o, err := disk.CreateOutput(out, 0o644, raw)
	if err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	defer o.Abort()
	if err := disk.Compress(cmd.Context(), raw, o, algo, func(done, total int64) { pr.update("compress "+algo, done, total) }); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	return o.Commit()
}
