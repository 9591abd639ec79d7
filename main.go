// Command clickpipe is a real-time clickstream pipeline in one binary.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/clickpipe/clickpipe/cmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := cmd.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
