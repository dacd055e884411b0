// Command hostos builds, configures and updates balenaOS-style operating-system images.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	_ "github.com/hostos/hostos/cmd/hostos/internal/prefault" // a faster start: see its doc
)

// interruptGrace is how long a command has, after SIGINT or SIGTERM, to stop at its next check of the
// context and clean up its temporary files. One still running then is ended as a power cut would end
// it: every hostos writer is crash-safe, so that leaves the old or the new state. A second signal ends
// the process at once.
const interruptGrace = 3 * time.Second

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	root := newRootCmdFor(os.Args[1:])
	// Signals are caught once a command runs: --version and help, which cobra answers before, end at
	// once anyway, and start without the runtime's signal-handling thread.
	root.PersistentPreRun = func(*cobra.Command, []string) { catchSignals(cancel) }
	err := root.ExecuteContext(ctx)
	if err != nil {
		code := exitCode(err)
		var in interrupted
		if errors.As(context.Cause(ctx), &in) {
			// After a signal, whatever failed failed because of it.
			code = in.code
			if errors.Is(err, context.Canceled) {
				err = in
			}
		}
		fmt.Fprintln(os.Stderr, "hostos: "+oneLine(err.Error()))
		os.Exit(code)
	}
}

// catchSignals ends the context at SIGINT or SIGTERM, with the signal as its cause; after
// interruptGrace, or at a second signal, it ends the process.
func catchSignals(cancel context.CancelCauseFunc) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		code := signalExitCode(sig)
		cancel(interrupted{sig, code})
		select {
		case <-sigs:
		case <-time.After(interruptGrace):
		}
		fmt.Fprintf(os.Stderr, "hostos: interrupted by %v\n", sig)
		os.Exit(code)
	}()
}

// interrupted is the cause of the context's end when a signal arrived.
type interrupted struct {
	sig  os.Signal
	code int
}

func (i interrupted) Error() string { return "interrupted by " + i.sig.String() }

// signalExitCode is the shell's convention: 128 plus the signal number.
func signalExitCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}
