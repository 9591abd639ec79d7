// Package ingest is the Segment-compatible tracking API.
package ingest

import (
	"errors"
	"fmt"
)

// Source maps a write key to a named source.
type Source struct {
	Name     string `mapstructure:"name"`
	WriteKey string `mapstructure:"write_key" secret:"true"`
}

// Config is the ingest section of the configuration.
type Config struct {
	// Listen is the tracking API address.
	Listen string `mapstructure:"listen"`
	// Sources are the accepted write keys.
	Sources []Source `mapstructure:"sources"`
	// MaxConnections bounds simultaneous client connections.
	MaxConnections int `mapstructure:"max_connections"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Listen: ":8080", MaxConnections: 4096}
}

// Validate names the offending key.
func (c Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("ingest.listen: must not be empty"))
	}
	seen := map[string]bool{}
	for i, s := range c.Sources {
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("ingest.sources[%d].name: must not be empty", i))
		}
		if len(s.WriteKey) < 8 {
			errs = append(errs, fmt.Errorf("ingest.sources[%d].write_key: shorter than 8 characters", i))
		}
		if seen[s.WriteKey] {
			errs = append(errs, fmt.Errorf("ingest.sources[%d].write_key: used by another source", i))
		}
		seen[s.WriteKey] = true
	}
	return errors.Join(errs...)
}
