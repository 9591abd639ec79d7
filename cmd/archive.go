package cmd

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/clickpipe/clickpipe/archive"
)

// newArchiveCmd is `clickpipe archive`: tools over the data lake. load
// returns the archive section of the configuration file at path (with env
// and defaults applied).
func newArchiveCmd(load func(path string) (archive.Config, error)) *cobra.Command {
	c := &cobra.Command{
		Use:   "archive",
		Short: "Inspect the data lake (Parquet on a local directory or S3)",
		Long: `archive reads the lake that serve writes (archive.url: a local directory or S3), beside a
running serve or without one.

Examples:
  clickpipe archive status --config config.yaml
  clickpipe archive compact --older-than 24h --table events`,
	}
	c.AddCommand(newArchiveStatusCmd(load), newArchiveCompactCmd(load))
	return c
}

func newArchiveCompactCmd(load func(path string) (archive.Config, error)) *cobra.Command {
	var (
		path      string
		olderThan time.Duration
		target    int64
		tables    []string
	)
	c := &cobra.Command{
		Use:   "compact",
		Short: "Merge small committed ranges (low traffic) into larger objects; safe beside a running serve",
		Long: `compact merges adjacent small committed ranges of a table into larger Parquet objects and
commits them with a new manifest, so that low-traffic hours do not leave thousands of tiny
files; it then deletes the replaced objects and the orphans of crashed flushes.

Examples:
  clickpipe archive compact --config config.yaml
  clickpipe archive compact --older-than 24h --target-bytes 268435456 --table events`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := load(path)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			st, err := archive.OpenStore(c.Context(), cfg)
			if err != nil {
				return err
			}
			opt := archive.CompactOptions{Before: time.Now().Add(-olderThan), TargetBytes: target,
				RowGroupRows: cfg.RowGroupRows}
			enc := json.NewEncoder(c.OutOrStdout())
			for _, table := range tables {
				res, err := archive.Compact(c.Context(), st, table, opt)
				if err != nil {
					return fmt.Errorf("compacting %s: %w", table, err)
				}
				if err := enc.Encode(res); err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&path, "config", "", "configuration file (YAML); defaults and CLICKPIPE_* env apply without one")
	c.Flags().DurationVar(&olderThan, "older-than", time.Hour, "only merge ranges committed at least this long ago")
	c.Flags().Int64Var(&target, "target-bytes", 128<<20, "upper bound of the Parquet bytes of one merged range")
	c.Flags().StringSliceVar(&tables, "table", archive.Tables(), "tables to compact")
	return c
}

func newArchiveStatusCmd(load func(path string) (archive.Config, error)) *cobra.Command {
	var (
		path       string
		asJSON     bool
		partitions bool
	)
	c := &cobra.Command{
		Use:   "status",
		Short: "Show committed sequence ranges, rows, gaps, overlaps and orphans per table and partition",
		Long: `status lists, per table, the committed stream-sequence ranges, their rows and bytes, gaps
and overlaps between ranges, and orphan objects (written but never committed). The running
server's console shows the same (Lake page, GET /v1/lake/status).

Examples:
  clickpipe archive status --config config.yaml
  clickpipe archive status --partitions --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := load(path)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			st, err := archive.OpenStore(c.Context(), cfg)
			if err != nil {
				return err
			}
			statuses, err := archive.Status(c.Context(), st)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(statuses)
			}
			return archive.WriteStatus(c.OutOrStdout(), statuses, partitions, time.Now())
		},
	}
	c.Flags().StringVar(&path, "config", "", "configuration file (YAML); defaults and CLICKPIPE_* env apply without one")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&partitions, "partitions", false, "list every dt/hour partition")
	return c
}
