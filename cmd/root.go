// Package cmd holds clickpipe's commands and is the composition root: the
// only package that imports every subsystem, wires them together and owns
// their lifecycle.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/clickpipe/clickpipe/archive"
)

// Version is set at build time with -ldflags "-X .../cmd.Version=v1.2.3".
var Version = "dev"

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// globalFlags are the persistent flags every command shares.
type globalFlags struct {
	logFormat string
	logLevel  string
}

// Execute runs the command line args and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "clickpipe: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "clickpipe",
		Short: "Real-time clickstream pipeline: Segment-compatible ingest, sessions, Parquet lake",
		Long: `clickpipe is a real-time clickstream pipeline in one binary: Segment SDKs send events to
its tracking API, it buffers them durably in embedded NATS JetStream, sessionizes them per
user into Badger for the query API, and archives them as Parquet.

Examples:
  clickpipe serve                                # run on embedded defaults
  clickpipe loadgen --rate 500 --duration 60s    # traffic for the local serve
  clickpipe tail                                 # watch events arrive
  open http://127.0.0.1:8081/console/            # the web console`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "", "log format: text or json (overrides log.format)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn, error (overrides log.level)")
	root.AddCommand(
		newServeCmd(g),
		newCheckCmd(g),
		newVersionCmd(),
		newTailCmd(),
		newLoadgenCmd(),
		newRebuildCmd(g),
		newFailedCmd(),
		newRegulationsCmd(),
		newClusterCmd(),
		newArchiveCmd(func(path string) (archive.Config, error) {
			cfg, err := loadConfig(path, g)
			if err != nil {
				return archive.Config{}, err
			}
			return cfg.Archive, nil
		}),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Long: `version prints the version this binary was built as.

Example:
  clickpipe version`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(c.OutOrStdout(), "clickpipe %s\n", Version)
			return err
		},
	}
}

// newLogger builds the process logger.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
