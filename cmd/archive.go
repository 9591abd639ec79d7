package cmd

import (
	"encoding/json"
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
	}
	c.AddCommand(newArchiveStatusCmd(load))
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
		Args:  cobra.NoArgs,
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
