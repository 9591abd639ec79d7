// Package process is the sessionizer: a fixed pool of workers, each the
// single writer of its partitions, fetches group-commit messages from the
// buffer, applies their events to per-user serving state in event time and
// commits state plus checkpoint in one store transaction before acking.
package process

import (
	"errors"
	"fmt"
	"time"
)

// Config is the process section of the configuration.
type Config struct {
	// SessionGap is the inactivity gap (event time) that ends a session.
	SessionGap time.Duration `mapstructure:"session_gap"`
	// PlatformGaps overrides SessionGap per event.Device.Platform
	// (web, mobile, tv, server).
	PlatformGaps map[string]time.Duration `mapstructure:"platform_gaps"`
	// SessionMax caps a session's length.
	SessionMax time.Duration `mapstructure:"session_max"`
	// AllowedLateness is the bounded out-of-orderness: the watermark is the
	// largest event time seen minus this. Older events are "too late".
	AllowedLateness time.Duration `mapstructure:"allowed_lateness"`
	// IdleTimeout: a partition without messages for this long advances its
	// watermark by processing time (wall clock - idle_timeout -
	// allowed_lateness) so its sessions still close.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// DedupWindow is the dedup horizon of (source, messageId).
	DedupWindow time.Duration `mapstructure:"dedup_window"`
	// SessionTTL is how long session records stay in the store.
	SessionTTL time.Duration `mapstructure:"session_ttl"`
	// UserTTL is how long an inactive user's state stays in the store.
	UserTTL time.Duration `mapstructure:"user_ttl"`
	// Workers is the size of the worker pool; partition p belongs to
	// worker p mod workers.
	Workers int `mapstructure:"workers"`
	// FetchBatch is the number of buffer messages fetched and committed
	// together; FetchWait how long a fetch waits for the first one.
	FetchBatch int           `mapstructure:"fetch_batch"`
	FetchWait  time.Duration `mapstructure:"fetch_wait"`
	// MinWatch is the watch time after which a title enters Continue
	// Watching; CompleteRatio the share of its length that completes it.
	MinWatch      time.Duration `mapstructure:"min_watch"`
	CompleteRatio float64       `mapstructure:"complete_ratio"`
	// HeartbeatCap bounds the playing time credited between two playback
	// events (a lost heartbeat does not count as hours watched).
	HeartbeatCap time.Duration `mapstructure:"heartbeat_cap"`
	// MaxBookmarks bounds the titles remembered per user.
	MaxBookmarks int `mapstructure:"max_bookmarks"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		SessionGap:      30 * time.Minute,
		PlatformGaps:    map[string]time.Duration{},
		SessionMax:      24 * time.Hour,
		AllowedLateness: 5 * time.Minute,
		IdleTimeout:     time.Minute,
		DedupWindow:     24 * time.Hour,
		SessionTTL:      30 * 24 * time.Hour,
		UserTTL:         90 * 24 * time.Hour,
		Workers:         2,
		FetchBatch:      64,
		FetchWait:       100 * time.Millisecond,
		MinWatch:        2 * time.Minute,
		CompleteRatio:   0.9,
		HeartbeatCap:    time.Minute,
		MaxBookmarks:    100,
	}
}

// Validate reports every invalid key, named as in config.yaml.
func (c Config) Validate() error {
	var errs []error
	pos := func(key string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("process.%s: must be positive, got %s", key, d))
		}
	}
	pos("session_gap", c.SessionGap)
	pos("session_max", c.SessionMax)
	pos("idle_timeout", c.IdleTimeout)
	pos("dedup_window", c.DedupWindow)
	pos("session_ttl", c.SessionTTL)
	pos("user_ttl", c.UserTTL)
	pos("fetch_wait", c.FetchWait)
	pos("min_watch", c.MinWatch)
	pos("heartbeat_cap", c.HeartbeatCap)
	if c.AllowedLateness < 0 {
		errs = append(errs, fmt.Errorf("process.allowed_lateness: must not be negative, got %s", c.AllowedLateness))
	}
	for p, g := range c.PlatformGaps {
		if g <= 0 || g > c.SessionMax {
			errs = append(errs, fmt.Errorf("process.platform_gaps.%s: must be in (0, session_max], got %s", p, g))
		}
	}
	if c.SessionGap > c.SessionMax {
		errs = append(errs, fmt.Errorf("process.session_gap: must not exceed process.session_max (%s), got %s", c.SessionMax, c.SessionGap))
	}
	if c.SessionTTL < c.SessionMax {
		errs = append(errs, fmt.Errorf("process.session_ttl: must be at least process.session_max, got %s", c.SessionTTL))
	}
	if c.Workers <= 0 {
		errs = append(errs, fmt.Errorf("process.workers: must be positive, got %d", c.Workers))
	}
	if c.FetchBatch <= 0 || c.FetchBatch > 10000 {
		errs = append(errs, fmt.Errorf("process.fetch_batch: must be in 1..10000, got %d", c.FetchBatch))
	}
	if c.CompleteRatio <= 0 || c.CompleteRatio > 1 {
		errs = append(errs, fmt.Errorf("process.complete_ratio: must be in (0, 1], got %g", c.CompleteRatio))
	}
	if c.MaxBookmarks <= 0 {
		errs = append(errs, fmt.Errorf("process.max_bookmarks: must be positive, got %d", c.MaxBookmarks))
	}
	return errors.Join(errs...)
}

func (c Config) gap(platform string) time.Duration {
	if g, ok := c.PlatformGaps[platform]; ok {
		return g
	}
	return c.SessionGap
}
