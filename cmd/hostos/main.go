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

	_ "github.com/hostos/hostos/cmd/hostos/internal/prefault" // a faster start: see its doc
)

// interruptGrace is how long a command has, after SIGINT or SIGTERM, to stop at its next check of the
// context and clean up its temporary files. One still running then is ended as a power cut would end
// it: every hostos writer is crash-safe, so that leaves the old or the new state. A second signal ends
// the process at once.
const interruptGrace = 3 * time.Second

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
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
	err := newRootCmdFor(os.Args[1:]).ExecuteContext(ctx)
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
