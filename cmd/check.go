package cmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/clickpipe/clickpipe/config"
)

func newCheckCmd(g *globalFlags) *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and print the effective values (secrets redacted)",
		Long: `check loads the configuration as serve would (defaults, the file, CLICKPIPE_* variables),
validates it strictly and prints the effective values as YAML, in the file's units, with
secrets redacted. It exits 2 on any error, naming the key.

Examples:
  clickpipe check --config config.yaml
  CLICKPIPE_BUFFER_DURABILITY=relaxed clickpipe check`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path, g)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := cfg.Print(c.OutOrStdout()); err != nil {
				return err
			}
			_, err = fmt.Fprintln(c.ErrOrStderr(), "configuration OK")
			return err
		},
	}
	c.Flags().StringVar(&path, "config", "", "configuration file (YAML); defaults and CLICKPIPE_* env apply without one")
	return c
}

// loadConfig loads the file (if any), env and the global flags.
func loadConfig(path string, g *globalFlags) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if g.logFormat != "" {
		cfg.Log.Format = g.logFormat
	}
	if g.logLevel != "" {
		cfg.Log.Level = g.logLevel
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid flags: %w", err)
	}
	return cfg, nil
}
