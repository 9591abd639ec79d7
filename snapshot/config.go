// Package snapshot moves partitions' serving state between nodes: for the
// partitions this node owns it writes snapshots of their key ranges to the
// object store, periodically and on a graceful release, keeps the last few
// of each, and on acquiring a partition restores the latest one when it is
// ahead of the local state, so the sessionizer replays from its checkpoint
// + 1 instead of from the stream's start. docs/format/snapshot.md is the
// spec of the objects and of the restore.
package snapshot

import (
	"errors"
	"fmt"
	"time"
)

// Config is the snapshot section of the configuration.
type Config struct {
	// Interval is how often an owned partition whose checkpoint moved is
	// snapshotted.
	Interval time.Duration `mapstructure:"interval"`
	// Keep is how many snapshots of each partition stay in the store (the
	// newest); older ones are deleted after each write.
	Keep int `mapstructure:"keep"`
	// ReplayWithin: an acquisition whose local checkpoint is at most
	// this many stream sequences behind the newest snapshot's, committed
	// within half of StreamRetention, keeps the local state and lets the
	// sessionizer replay the gap (0: always restore a newer snapshot).
	ReplayWithin uint64 `mapstructure:"replay_within"`
	// StreamRetention is buffer.retention (set by the caller, not
	// configured here): a local state older than half of it is never
	// replayed forward, since the stream may no longer hold its gap.
	StreamRetention time.Duration `mapstructure:"-"`
}

// DefaultConfig is the configuration of a node that sets nothing.
func DefaultConfig() Config {
	return Config{Interval: 5 * time.Minute, Keep: 2, ReplayWithin: 20000}
}

// Validate reports every invalid setting.
func (c Config) Validate() error {
	var errs []error
	if c.Interval < time.Second {
		errs = append(errs, fmt.Errorf("snapshot.interval must be at least 1s, got %s", c.Interval))
	}
	if c.Keep < 1 {
		errs = append(errs, fmt.Errorf("snapshot.keep must be at least 1, got %d", c.Keep))
	}
	return errors.Join(errs...)
}
