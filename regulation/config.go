// Package regulation keeps the delete and suppress requests of users
// (issue 13, docs/privacy.md): durable in JetStream key-value buckets,
// idempotent, with per-store progress and an audit record. It holds the
// suppressed and erased ids in memory so ingest, the sessionizer, rebuild
// and the archive can ask about an id without touching anything else.
package regulation

import (
	"errors"
	"fmt"
)

// Config is the regulation section of the configuration.
type Config struct {
	// MaxUserIDs bounds the user ids of one request.
	MaxUserIDs int `mapstructure:"max_user_ids"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config { return Config{MaxUserIDs: 1000} }

// Validate reports invalid fields, named as in config.yaml.
func (c Config) Validate() error {
	if c.MaxUserIDs < 1 || c.MaxUserIDs > 100000 {
		return errors.Join(fmt.Errorf("regulation.max_user_ids: %d is outside 1..100000", c.MaxUserIDs))
	}
	return nil
}
