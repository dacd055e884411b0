package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostos/hostos/config/compose"
	"github.com/hostos/hostos/hostapp/preload"
	"github.com/hostos/hostos/partition/disk"
)

func newPreloadCmd() *cobra.Command {
	var (
		output, composeFile, image, release string
		images                              []string
		o                                   preload.Options
		asJSON, quiet                       bool
		regAuth                             string
	)
	cmd := &cobra.Command{
		Use:   "preload IMAGE (--compose FILE | --image REF) [--supervisor [IMAGE=]SOURCE]",
		Short: "Put a release's containers and apps.json into the data partition of a balenaOS image, offline",
		Long: `Preload a release into a balenaOS image: its container images go into the engine store on the data
partition (written directly, no daemon, no root) and apps.json tells the supervisor to run them on first
boot. Images are read from an OCI layout directory, a docker save or OCI archive, or docker://registry/repo:tag,
for the image's architecture. The work happens on a copy renamed into place when complete; only the data
partition's bytes change. A compressed image needs --output.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if composeFile != "" && image != "" || composeFile == "" && image == "" && o.Supervisor == "" {
				return usageError{errors.New("give exactly one of --compose FILE and --image REF (or only --supervisor)")}
			}
			if composeFile != "" {
				b, err := disk.ReadInput(composeFile, "compose file", compose.MaxSize)
				if err != nil {
					return err
				}
				o.Compose, o.ComposeFile, o.ComposeDir = b, composeFile, filepath.Dir(composeFile)
			}
			o.Image = image
			o.Release.Commit = release
			if len(images) > 0 {
				o.Images = map[string]string{}
				for _, kv := range images {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" || v == "" {
						return usageError{fmt.Errorf("--images %q: want SERVICE=REF", kv)}
					}
					if _, dup := o.Images[k]; dup {
						return usageError{fmt.Errorf("--images: service %s given twice", k)}
					}
					o.Images[k] = v
				}
			}
			auth, err := registryAuth(regAuth)
			if err != nil {
				return err
			}
			o.Registry.Auth = auth
			t, err := sourceDateEpoch()
			if err != nil {
				return err
			}
			o.Time = t
			bar := newProgress(quiet || asJSON)
			o.Progress = func(done, total int64) { bar.update("layers", done, total) }
			o.Log = func(msg string) {
				if !asJSON && !quiet {
					fmt.Fprintln(cmd.ErrOrStderr(), terminalSafe(msg))
				}
			}
			res, err := preload.Preload(cmd.Context(), args[0], output, o)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			if !res.Changed {
				fmt.Fprintf(w, "%s: already preloaded, nothing written\n", terminalSafe(res.Output))
			} else if res.AppUUID == "" {
				fmt.Fprintf(w, "%s: preloaded, no app, %d MiB of layers written (%s)\n", terminalSafe(res.Output), res.LayerBytes>>20, res.Platform)
			} else {
				fmt.Fprintf(w, "%s: preloaded %s (%s), release %s, %d MiB of layers written (%s)\n", terminalSafe(res.Output),
					terminalSafe(res.AppName), res.AppUUID, res.Commit, res.LayerBytes>>20, res.Platform)
			}
			if s := res.Supervisor; s != nil {
				fmt.Fprintf(w, "  %-16s %s  %s  %d MiB\n", "(supervisor)", terminalSafe(s.Image), shortID(s.ImageID), s.Size>>20)
			}
			for _, s := range res.Services {
				fmt.Fprintf(w, "  %-16s %s  %s  %d MiB\n", terminalSafe(s.Name), terminalSafe(s.Image), shortID(s.ImageID), s.Size>>20)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&output, "output", "o", "", "write the preloaded image to `OUT` and leave IMAGE untouched")
	fl.StringVar(&composeFile, "compose", "", "compose `FILE` of the release (balena's subset)")
	fl.StringVar(&image, "image", "", "single-container release from image `REF` (OCI layout, archive or docker://), with balena's default compose")
	fl.StringArrayVar(&images, "images", nil, "`SERVICE=REF`: where a service's image is read from (default docker://<its image:>); repeatable")
	fl.StringVar(&o.Release.AppName, "app-name", "", "app name (default preloaded)")
	fl.StringVar(&o.Release.AppUUID, "app-uuid", "", "app uuid (default derived from the name)")
	fl.Int64Var(&o.Release.AppID, "app-id", 0, "app id (default derived from the uuid)")
	fl.StringVar(&release, "release", "", "release `COMMIT` (default derived from the compose file and images)")
	fl.BoolVar(&o.Pin, "pin", false, "pin the device to this release (pinDevice)")
	fl.BoolVar(&o.Force, "force", false, "replace an apps.json already on the data partition")
	fl.StringVar(&o.Supervisor, "supervisor", "", "`[IMAGE=]SOURCE`: also preload the supervisor image IMAGE (default: SOURCE's docker:// reference), tagged IMAGE without its digest and balena_supervisor:VERSION as balenaOS's own images carry it")
	fl.StringVar(&o.SupervisorVersion, "supervisor-version", "", "the supervisor's `VERSION` (default: IMAGE's tag, when it is a version)")
	fl.BoolVar(&o.Grow, "grow", false, "when the release does not fit, grow the image file, its partition table and the data partition (the last one)")
	fl.StringVar(&regAuth, "registry-auth", "", "registry credentials: `USER:PASSWORD`, or a FILE holding that line (default: the docker config's, else anonymous)")
	fl.BoolVar(&asJSON, "json", false, "print a JSON summary")
	fl.BoolVarP(&quiet, "quiet", "q", false, "no progress or warnings")
	return cmd
}

// shortID is an image id as docker images shows it.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
