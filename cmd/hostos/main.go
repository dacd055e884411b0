// Command hostos builds, configures and updates balenaOS-style operating-system images.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostos: "+oneLine(err.Error()))
		os.Exit(exitCode(err))
	}
}
