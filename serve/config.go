// Package serve is the read-only HTTP query API over the serving state
// (package state) and its live view; docs/api.md specifies it. Its
// section of the configuration also sets the store's Badger options.
package serve

import (
	"errors"
	"fmt"
	"time"

	"github.com/clickpipe/clickpipe/state"
)

// Config is the serving-state section of the configuration.
type Config struct {
	// GCInterval is how often the value log is garbage-collected.
	GCInterval time.Duration `mapstructure:"gc_interval"`
	// GCDiscardRatio is the share of stale data that makes a value-log
	// file worth rewriting.
	GCDiscardRatio float64 `mapstructure:"gc_discard_ratio"`
	// MemTableBytes is Badger's memtable size (also bounds a transaction).
	MemTableBytes int64 `mapstructure:"memtable_bytes"`
	// BlockCacheBytes is Badger's block cache.
	BlockCacheBytes int64 `mapstructure:"block_cache_bytes"`
	// SessionsLimit is the default and MaxSessionsLimit the largest
	// ?limit= of the sessions endpoint.
	SessionsLimit    int `mapstructure:"sessions_limit"`
	MaxSessionsLimit int `mapstructure:"max_sessions_limit"`
	// TopPaths is how many paths /v1/paths/top returns.
	TopPaths int `mapstructure:"top_paths"`
	// RouteTimeout and RouteRetryAfter are the routed queries' bounds
	// under cluster.partition_ownership (RouterConfig).
	RouteTimeout    time.Duration `mapstructure:"route_timeout"`
	RouteRetryAfter time.Duration `mapstructure:"route_retry_after"`
	// AfterWait bounds how long a user query given ?after= (ingest's
	// Clickpipe-Position) waits for the user's partition to apply it.
	AfterWait time.Duration `mapstructure:"after_wait"`
}

// Router is the RouterConfig this section sets.
func (c Config) Router() RouterConfig {
	return RouterConfig{Timeout: c.RouteTimeout, RetryAfter: c.RouteRetryAfter}
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		GCInterval:       5 * time.Minute,
		GCDiscardRatio:   0.5,
		MemTableBytes:    64 << 20,
		BlockCacheBytes:  128 << 20,
		SessionsLimit:    20,
		MaxSessionsLimit: 200,
		TopPaths:         20,
		RouteTimeout:     DefaultRouterConfig().Timeout,
		RouteRetryAfter:  DefaultRouterConfig().RetryAfter,
		AfterWait:        time.Second,
	}
}

// StoreOptions are the Badger options this section sets.
func (c Config) StoreOptions() state.Options {
	o := state.DefaultOptions()
	o.GCInterval, o.GCDiscardRatio = c.GCInterval, c.GCDiscardRatio
	o.MemTableBytes, o.BlockCacheBytes = c.MemTableBytes, c.BlockCacheBytes
	return o
}

// Validate reports every invalid key, named as in config.yaml.
func (c Config) Validate() error {
	var errs []error
	if c.GCInterval <= 0 {
		errs = append(errs, fmt.Errorf("serve.gc_interval: must be positive, got %s", c.GCInterval))
	}
	if c.GCDiscardRatio <= 0 || c.GCDiscardRatio >= 1 {
		errs = append(errs, fmt.Errorf("serve.gc_discard_ratio: must be in (0, 1), got %g", c.GCDiscardRatio))
	}
	if c.MemTableBytes < 4<<20 {
		errs = append(errs, fmt.Errorf("serve.memtable_bytes: must be at least 4 MiB, got %d", c.MemTableBytes))
	}
	if c.BlockCacheBytes < 0 {
		errs = append(errs, fmt.Errorf("serve.block_cache_bytes: must not be negative, got %d", c.BlockCacheBytes))
	}
	if c.SessionsLimit <= 0 || c.MaxSessionsLimit < c.SessionsLimit {
		errs = append(errs, fmt.Errorf("serve.sessions_limit: must be positive and at most serve.max_sessions_limit, got %d/%d",
			c.SessionsLimit, c.MaxSessionsLimit))
	}
	if c.TopPaths <= 0 {
		errs = append(errs, fmt.Errorf("serve.top_paths: must be positive, got %d", c.TopPaths))
	}
	if c.RouteTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("serve.route_timeout: must be at least 100ms, got %s", c.RouteTimeout))
	}
	if c.AfterWait <= 0 || c.AfterWait >= c.RouteTimeout {
		errs = append(errs, fmt.Errorf("serve.after_wait: must be positive and below serve.route_timeout (%s, so a routed query's wait ends first), got %s",
			c.RouteTimeout, c.AfterWait))
	}
	if c.RouteRetryAfter < time.Second || c.RouteRetryAfter%time.Second != 0 {
		errs = append(errs, fmt.Errorf("serve.route_retry_after: must be whole seconds, at least 1s (a Retry-After header), got %s", c.RouteRetryAfter))
	}
	return errors.Join(errs...)
}
