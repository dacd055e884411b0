package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/hostos/hostos/hostapp/release"
)

// newReleaseCmd is the parent of the commands that take a balena project folder to an image.
func newReleaseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "release",
		Short: "From a balena project folder to the images of a release, for one device type",
	}
	cmd.AddCommand(newReleaseRenderCmd())
	cmd.AddCommand(newReleaseBuildCmd(), newReleasePreloadCmd())
	return cmd
}

func newReleaseRenderCmd() *cobra.Command {
	var (
		o             release.Options
		out           string
		asJSON, quiet bool
	)
	cmd := &cobra.Command{
		Use:   "render DIR --device-type SLUG [--app-name N] [--release-hash H] [-o OUT]",
		Short: "Resolve a balena project for a device type: one rendered build context per service and the compose file",
		Long: `Resolve a balena project folder as balena's builder does, for one device type: a docker-compose.yml
(balena's subset), or a lone Dockerfile, Dockerfile.template or package.json as balena's default
single-container release (service main). Each build service's Dockerfile is chosen in balena's order
(Dockerfile.<device-type>, Dockerfile.<arch>, Dockerfile.template, Dockerfile) and its %%BALENA_*%% variables
rendered; OUT receives a copy of each build context (services/NAME, as .dockerignore allows) and
docker-compose.yml pointing at them. DIR is only read.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.DeviceType == "" {
				return usageError{fmt.Errorf("--device-type is required")}
			}
			made := false
			if out == "" {
				dir, err := os.MkdirTemp("", "hostos-release-"+o.DeviceType+"-")
				if err != nil {
					return err
				}
				out, made = dir, true
			}
			o.Log = func(msg string) {
				if !quiet && !asJSON {
					fmt.Fprintln(cmd.ErrOrStderr(), "warning:", terminalSafe(msg))
				}
			}
			r, err := release.Render(cmd.Context(), args[0], out, o)
			if err != nil {
				if made {
					os.RemoveAll(out)
				}
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s: rendered for %s (%s) into %s\n", terminalSafe(args[0]), terminalSafe(r.Machine), r.Arch, terminalSafe(r.Dir))
			for _, s := range r.Services {
				if s.Context == "" {
					fmt.Fprintf(w, "  %-16s image %s\n", terminalSafe(s.Name), terminalSafe(s.Image))
				} else {
					fmt.Fprintf(w, "  %-16s build %s (%s)\n", terminalSafe(s.Name), terminalSafe(s.Context), terminalSafe(s.Dockerfile))
				}
			}
			fmt.Fprintf(w, "  compose          %s\n", terminalSafe(r.ComposeFile))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.DeviceType, "device-type", "", "device-type `SLUG` to render for (raspberrypi4-64, intel-nuc, ...)")
	fl.StringVar(&o.AppName, "app-name", "", "`NAME` for %%BALENA_APP_NAME%% (default DIR's name)")
	fl.StringVar(&o.ReleaseHash, "release-hash", "", "`HASH` for %%BALENA_RELEASE_HASH%% (default unavailable)")
	fl.StringVarP(&out, "output", "o", "", "new or empty folder `OUT` to write into, outside DIR (default a new temporary folder)")
	fl.BoolVar(&asJSON, "json", false, "print the rendered release as JSON")
	fl.BoolVarP(&quiet, "quiet", "q", false, "no warnings")
	return cmd
}
