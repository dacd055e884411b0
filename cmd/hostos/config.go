package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/configure"
	"github.com/hostos/hostos/partition/disk"
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

// printConfig prints the JSON document, or one "key: value" line per top-level key with every control
// character escaped (a config.json is input from anywhere: it must not drive the terminal).
func printConfig(w io.Writer, c config.Config, asJSON bool) error {
	if asJSON {
		var v any
		if err := json.Unmarshal(c.Encode(), &v); err != nil {
			return err
		}
		return printSafeJSON(w, v)
	}
	for _, k := range c.Keys() {
		v, _ := c.GetPath(k)
		fmt.Fprintf(w, "%s: %s\n", terminalSafe(k), configValueText(v))
	}
	return nil
}

// configValueText is a config.json value as text: a string as it is, anything else as compact JSON;
// either way safe for a terminal.
func configValueText(v any) string {
	if s, ok := v.(string); ok {
		return terminalSafe(s)
	}
	return jsonTerminalSafe(config.EncodeValue(v))
}

// printSafeJSON is printJSON with every C1 control, DEL and bidirectional control written as a \u
// escape (encoding/json escapes only C0 controls): the same JSON value, harmless on a terminal.
func printSafeJSON(w io.Writer, v any) error {
	var b bytes.Buffer
	if err := printJSON(&b, v); err != nil {
		return err
	}
	_, err := io.WriteString(w, jsonTerminalSafe(b.Bytes()))
	return err
}

// jsonTerminalSafe rewrites the runes unsafeRune reports in JSON text as \u escapes. Outside strings
// JSON text is ASCII, so only string contents change and the text still decodes to the same value.
func jsonTerminalSafe(b []byte) string {
	s := string(b)
	if !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	var out strings.Builder
	for _, r := range s {
		if unsafeRune(r) && r >= 0x7f { // C0 controls are escaped by every JSON encoder already
			fmt.Fprintf(&out, `\u%04x`, r)
			continue
		}
		out.WriteRune(r)
	}
	return out.String()
}

// terminalSafe returns s unchanged when it holds nothing a terminal would act on, else s quoted with
// every control character (C0, DEL, C1: ESC and CSI start ANSI sequences), bidirectional override and
// invalid UTF-8 byte escaped, so that the output shows exactly what the input holds.
func terminalSafe(s string) string {
	if !strings.ContainsFunc(s, unsafeRune) && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case unsafeRune(r) && r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}

// unsafeRune reports a rune a terminal interprets: C0 and C1 controls, DEL, and the bidirectional
// embeddings, overrides and isolates that reorder what follows.
func unsafeRune(r rune) bool {
	return r < 0x20 || r >= 0x7f && r < 0xa0 || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 ||
		r == 0x200e || r == 0x200f || r == 0x061c
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
			b, err := disk.ReadInput(file, "config.json", config.MaxConfigBytes)
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
