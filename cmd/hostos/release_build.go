package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/hostos/hostos/hostapp/inspect"
	"github.com/hostos/hostos/hostapp/preload"
	"github.com/hostos/hostos/hostapp/release"
	"github.com/hostos/hostos/partition/disk"
)

// releaseBuildFlags are the flags release build and release preload share.
type releaseBuildFlags struct {
	ro            release.Options
	bo            release.BuildOptions
	asJSON, quiet bool
}

func (f *releaseBuildFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.ro.DeviceType, "device-type", "", "device type `SLUG` to build for (its architecture and machine name)")
	fl.StringVar(&f.ro.AppName, "app-name", "", "app `NAME` (%%BALENA_APP_NAME%%, and apps.json's app name)")
	fl.StringVar(&f.ro.ReleaseHash, "release-hash", "", "release `HASH` (%%BALENA_RELEASE_HASH%%, and apps.json's release commit)")
	fl.StringVar(&f.bo.Tag, "tag", release.DefaultTag, "image name `PREFIX`: service S is tagged PREFIX/S:latest in the builder's engine")
	fl.StringVar(&f.bo.Docker, "docker", os.Getenv("HOSTOS_DOCKER"), "docker CLI `PATH` to build with (default $HOSTOS_DOCKER, else the first docker on PATH with buildx or builtin BuildKit); the daemon is DOCKER_HOST's")
	fl.BoolVar(&f.asJSON, "json", false, "print a JSON summary")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no builder output or warnings")
}

// callbacks shows Render's and Build's messages on stderr and the builder's output when stderr is a
// terminal.
func (f *releaseBuildFlags) callbacks(w io.Writer) {
	verbose := !f.asJSON && !f.quiet
	f.ro.Log = func(msg string) {
		if verbose {
			fmt.Fprintln(w, "warning:", terminalSafe(msg))
		}
	}
	f.bo.Log = func(msg string) {
		if verbose {
			fmt.Fprintln(w, terminalSafe(msg))
		}
	}
	if verbose && term.IsTerminal(int(os.Stderr.Fd())) {
		f.bo.Output = func(service, line string) { fmt.Fprintf(w, "[%s] %s\n", terminalSafe(service), terminalSafe(line)) }
	}
}

func newReleaseBuildCmd() *cobra.Command {
	var (
		f   releaseBuildFlags
		out string
	)
	cmd := &cobra.Command{
		Use:   "build DIR --device-type SLUG [--tag PREFIX] [-o OUT_DIR]",
		Short: "Render a balena project and build its services with Docker's BuildKit for a device type",
		Long: `Render the project in DIR for the device type (see hostos release render), build each service that has
a build context with Docker's BuildKit for the device type's architecture (build args and .dockerignore
honoured), and save each image as a docker save archive OUT_DIR/SERVICE.tar, ready for hostos preload,
beside the resolved compose file OUT_DIR/docker-compose.yml. The docker CLI must drive BuildKit: one with the buildx
plugin, or Debian's docker.io 20.10 client; its daemon is the one DOCKER_HOST names. A foreign
architecture whose Dockerfile has RUN steps needs QEMU user emulation registered with binfmt_misc.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.ro.DeviceType == "" {
				return usageError{errors.New("give --device-type SLUG")}
			}
			f.callbacks(cmd.ErrOrStderr())
			work, err := os.MkdirTemp("", "hostos-release-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			r, err := release.Render(cmd.Context(), args[0], filepath.Join(work, "project"), f.ro)
			if err != nil {
				return err
			}
			f.bo.OutDir = out
			built, err := release.Build(cmd.Context(), r, f.bo)
			if err != nil {
				return err
			}
			// The resolved compose file beside the archives, for hostos preload --compose.
			composeFile := filepath.Join(out, "docker-compose.yml")
			if err := os.WriteFile(composeFile, r.Compose, 0o644); err != nil {
				return fmt.Errorf("compose file: %w", err)
			}
			r.ComposeFile = composeFile
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), struct {
					ComposeFile string `json:"composeFile"`
					*release.Built
				}{r.ComposeFile, built})
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "built %d service(s) for %s (%s)\n", len(built.Images), terminalSafe(f.ro.DeviceType), built.Platform)
			images := ""
			for _, im := range built.Images {
				fmt.Fprintf(w, "  %-16s %s  %s  %s\n", terminalSafe(im.Service), terminalSafe(im.Ref), shortID(im.ID), terminalSafe(im.Archive))
				images += " --images " + terminalSafe(im.Service+"="+im.Archive)
			}
			for _, s := range built.Pulled {
				fmt.Fprintf(w, "  %-16s (image only: read from its registry)\n", terminalSafe(s))
			}
			fmt.Fprintf(w, "preload with: hostos preload IMAGE --compose %s%s\n", terminalSafe(r.ComposeFile), images)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "release", "`OUT_DIR` for the image archives and the rendered project")
	return cmd
}

func newReleasePreloadCmd() *cobra.Command {
	var (
		f      releaseBuildFlags
		output string
		o      preload.Options
	)
	cmd := &cobra.Command{
		Use:   "preload IMAGE DIR [--device-type SLUG] [-o OUT]",
		Short: "Render, build and preload a balena project into a balenaOS image in one go",
		Long: `Render the project in DIR for the device type (default: the image's own), build its services with
Docker's BuildKit (as hostos release build does, with the daemon DOCKER_HOST names) and preload them
into IMAGE (as hostos preload does): apps.json carries each service's compose configuration. Nothing
is written to IMAGE when the build fails.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			image, dir := args[0], args[1]
			if f.ro.DeviceType == "" {
				slug, err := imageDeviceType(image)
				if err != nil {
					return err
				}
				f.ro.DeviceType = slug
			}
			f.callbacks(cmd.ErrOrStderr())
			work, err := os.MkdirTemp("", "hostos-release-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			r, err := release.Render(cmd.Context(), dir, filepath.Join(work, "project"), f.ro)
			if err != nil {
				return err
			}
			f.bo.OutDir = filepath.Join(work, "images")
			built, err := release.Build(cmd.Context(), r, f.bo)
			if err != nil {
				return err
			}
			o.Compose, o.ComposeFile, o.ComposeDir = r.Compose, r.ComposeFile, r.Dir
			o.Images = built.Archives()
			o.Release.AppName, o.Release.Commit = f.ro.AppName, f.ro.ReleaseHash
			if o.Time, err = sourceDateEpoch(); err != nil {
				return err
			}
			bar := newProgress(f.quiet || f.asJSON)
			o.Progress = func(done, total int64) { bar.update("layers", done, total) }
			o.Log = f.bo.Log
			res, err := preload.Preload(cmd.Context(), image, output, o)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), struct {
					Build   *release.Built  `json:"build"`
					Preload *preload.Result `json:"preload"`
				}{built, res})
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s: preloaded %s (%s), release %s, %d MiB of layers written (%s)\n", terminalSafe(res.Output),
				terminalSafe(res.AppName), res.AppUUID, res.Commit, res.LayerBytes>>20, res.Platform)
			for _, s := range res.Services {
				fmt.Fprintf(w, "  %-16s %s  %s  %d MiB\n", terminalSafe(s.Name), terminalSafe(s.Image), shortID(s.ImageID), s.Size>>20)
			}
			return nil
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&output, "output", "o", "", "write the preloaded image to `OUT` and leave IMAGE untouched")
	fl.BoolVar(&o.Pin, "pin", false, "pin the device to this release (pinDevice)")
	fl.BoolVar(&o.Force, "force", false, "replace an apps.json already on the data partition")
	fl.BoolVar(&o.Grow, "grow", false, "when the release does not fit, grow the image file, its partition table and the data partition (the last one)")
	return cmd
}

// imageDeviceType reads the device type the image was built for, as hostos inspect shows it.
func imageDeviceType(image string) (string, error) {
	d, err := disk.Open(image, false)
	if err != nil {
		return "", fmt.Errorf("image: %w", err)
	}
	defer d.Close()
	r, err := inspect.Inspect(d)
	if err != nil {
		return "", fmt.Errorf("%w; give --device-type SLUG", err)
	}
	if strings.TrimSpace(r.DeviceType) == "" {
		return "", usageError{fmt.Errorf("%s records no device type (device-type.json or config.json deviceType): give --device-type SLUG", image)}
	}
	return r.DeviceType, nil
}
