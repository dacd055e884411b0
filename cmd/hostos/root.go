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

// commands are hostos's commands, in the order help lists them, each with its name (the first word of
// its Use) so that the one a command line names can be built alone.
var commands = []struct {
	name string
	new  func() *cobra.Command
}{
	{"build", newBuildCmd}, {"inspect", newInspectCmd}, {"configure", newConfigureCmd}, {"config", newConfigCmd},
	{"bundle", newBundleCmd}, {"update", newUpdateCmd}, {"status", newStatusCmd}, {"commit", newCommitCmd},
	{"rollback", newRollbackCmd}, {"rollback-altboot", newRollbackAltbootCmd}, {"health", newHealthCmd},
	{"repair", newRepairCmd}, {"preload", newPreloadCmd}, {"flash", newFlashCmd}, {"release", newReleaseCmd},
	{"version", newVersionCmd},
}

// newRootCmd is the whole command tree.
func newRootCmd() *cobra.Command { return newRootCmdFor(nil) }

// newRootCmdFor is the command tree args (the command line without the program name) need: only the
// command they name when their first word names one, none for a lone --version, all of them for
// anything else (help, completion, a misspelt command that cobra suggests a fix for). Building the
// flags of every command is most of the work of a short command's start.
func newRootCmdFor(args []string) *cobra.Command {
	root := &cobra.Command{
		Use:           "hostos",
		Short:         "Build, configure and update balenaOS-style operating-system images",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       readBuildInfo().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	switch named := commandNamed(args); {
	case named >= 0:
		root.AddCommand(commands[named].new())
	case len(args) == 1 && args[0] == "--version":
	default:
		for _, c := range commands {
			root.AddCommand(c.new())
		}
	}
	usageArgs(root)
	return root
}

// commandNamed is the index in commands of the command args's first word names, or -1.
func commandNamed(args []string) int {
	if len(args) == 0 {
		return -1
	}
	for i, c := range commands {
		if c.name == args[0] {
			return i
		}
	}
	return -1
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
