package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// usageError marks errors in how the command was called (exit code 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "hostos",
		Short:         "Build, configure and update balenaOS-style operating-system images",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       readBuildInfo().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newBuildCmd(), newInspectCmd(), newConfigureCmd(), newConfigCmd(), newBundleCmd(),
		newUpdateCmd(), newStatusCmd(), newCommitCmd(), newRollbackCmd(), newRollbackAltbootCmd(), newHealthCmd(), newRepairCmd(), newPreloadCmd(), newFlashCmd(), newReleaseCmd(),
		newVersionCmd())
	usageArgs(root)
	return root
}

// exitCodes maps sentinel errors to process exit codes: the one table that does. The first match wins;
// anything else is 1.
var exitCodes = []struct {
	err  error
	code int
}{
	{context.Canceled, 130}, // interrupted: the shell's code for SIGINT
	{errUsage, 2},
}

// errUsage marks errors in how the command was called.
var errUsage = errors.New("usage")

// exitCode maps an error to the process exit code.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		err = errUsage
	}
	// cobra reports an unknown command as plain text; it is the one error matched by its words.
	if strings.HasPrefix(err.Error(), "unknown command") {
		err = errUsage
	}
	for _, e := range exitCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return 1
}

// usageArgs makes every command's argument check an error of usage (exit code 2).
func usageArgs(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
}

// oneLine folds a multi-line message into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// printJSON prints v as indented JSON: the one --json format of every command.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintln(w, string(b))
	return nil
}
