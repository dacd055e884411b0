package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/configure"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Read and write config.json in a balenaOS image or a mounted boot partition",
	}
	cmd.AddCommand(newConfigReadCmd(), newConfigWriteCmd(), newConfigInjectCmd())
	return cmd
}

func newConfigReadCmd() *cobra.Command {
	var bootDir string
	var asJSON, secrets bool
	cmd := &cobra.Command{
		Use:   "read [IMAGE]",
		Short: "Print config.json (secrets redacted unless --show-secrets)",
		Args:  imageOrBootDir(&bootDir, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var c config.Config
			var err error
			if bootDir != "" {
				var tg *configure.Target
				if tg, err = configure.OpenDir(bootDir); err == nil {
					c, err = tg.Config()
				}
			} else {
				c, err = configure.ReadConfig(args[0])
			}
			if err != nil {
				return withHint(err)
			}
			if !secrets {
				c = config.Redact(c)
			}
			return printConfig(cmd.OutOrStdout(), c, asJSON)
		},
	}
	cmd.Flags().StringVar(&bootDir, "boot-dir", "", "read from a boot partition mounted at `DIR`")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print config.json as JSON")
	cmd.Flags().BoolVar(&secrets, "show-secrets", false, "do not redact apiKey, deviceApiKey and other secrets")
	return cmd
}

// printConfig prints the JSON document, or one "key: value" line per top-level key.
func printConfig(w io.Writer, c config.Config, asJSON bool) error {
	if asJSON {
		var v any
		if err := json.Unmarshal(c.Encode(), &v); err != nil {
			return err
		}
		return printJSON(w, v)
	}
	for _, k := range c.Keys() {
		v, _ := c.GetPath(k)
		if s, ok := v.(string); ok {
			fmt.Fprintf(w, "%s: %s\n", k, s)
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: %s\n", k, b)
	}
	return nil
}

func newConfigWriteCmd() *cobra.Command {
	var bootDir string
	var str, asJSON bool
	cmd := &cobra.Command{
		Use:   "write [IMAGE] KEY VALUE",
		Short: "Set one config.json key (dotted keys; true/false, numbers, null and JSON keep their types)",
		Long: `Set one config.json key. KEY may be dotted (os.network.connectivity.uri). VALUE keeps its JSON type:
true and false are booleans, numbers are numbers, null is null, [..] and {..} are JSON; anything else is a
string. --string stores VALUE as a string whatever it looks like.`,
		Args: imageOrBootDir(&bootDir, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, raw := args[len(args)-2], args[len(args)-1]
			v, err := config.ParseValue(raw, str)
			if err != nil {
				return usageError{fmt.Errorf("value for %s: %w", key, err)}
			}
			return applyConfig(cmd, bootDir, args, configure.Options{Set: []configure.Setting{{Key: key, Value: v}}}, asJSON)
		},
	}
	cmd.Flags().StringVar(&bootDir, "boot-dir", "", "write to a boot partition mounted at `DIR`")
	cmd.Flags().BoolVar(&str, "string", false, "store VALUE as a string")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newConfigInjectCmd() *cobra.Command {
	var bootDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inject [IMAGE] FILE",
		Short: "Replace config.json with FILE, a JSON object",
		Args:  imageOrBootDir(&bootDir, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[len(args)-1]
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			c, err := config.ParseConfig(b)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			return applyConfig(cmd, bootDir, args, configure.Options{Config: &c, Replace: true}, asJSON)
		},
	}
	cmd.Flags().StringVar(&bootDir, "boot-dir", "", "write to a boot partition mounted at `DIR`")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// applyConfig runs o on the image args[0] or on bootDir and prints what changed.
func applyConfig(cmd *cobra.Command, bootDir string, args []string, o configure.Options, asJSON bool) error {
	t, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	o.Time = t
	return runConfigure(cmd, bootDir, args, "", o, asJSON, newProgress(true))
}

// runConfigure applies o to bootDir, or to the image args[0] (into output when set), and prints the result.
func runConfigure(cmd *cobra.Command, bootDir string, args []string, output string, o configure.Options, asJSON bool, p *progress) error {
	var res configure.Result
	target := bootDir
	if bootDir != "" {
		tg, err := configure.OpenDir(bootDir)
		if err != nil {
			return err
		}
		if res, err = tg.Apply(o); err != nil {
			return err
		}
	} else {
		target = args[0]
		if output != "" {
			target = output
		}
		var err error
		res, err = configure.Image(cmd.Context(), args[0], output, o, func(done, total int64) { p.update("decompress", done, total) })
		if err != nil {
			return withHint(err)
		}
	}
	return printResult(cmd.OutOrStdout(), target, res, asJSON)
}
