// Package process is the sessionizer: a fixed pool of workers, each the
// single writer of its partitions, fetches group-commit messages from the
// buffer, applies their events to per-user serving state in event time and
// commits state plus checkpoint in one store transaction before acking.
package process

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
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
	// together; FetchWait how long a fetch collects them (at low load, the
	// time an event waits before it is applied; at least 10 ms).
	FetchBatch int           `mapstructure:"fetch_batch"`
	FetchWait  time.Duration `mapstructure:"fetch_wait"`
	// AckWait is the partition consumers' AckWait: how long a fetched
	// message may stay unacknowledged before JetStream delivers it again
	// (a node paused or a batch stuck longer; the redelivery is skipped as
	// applied, by the checkpoint). At least 1 s.
	AckWait time.Duration `mapstructure:"ack_wait"`
	// StallAfter turns readiness false, naming the partition, when a
	// partition this node consumes has neither committed nor found its
	// consumer empty for this long (fetches or commits failing, a reopen
	// that cannot complete). 0 turns the check off.
	StallAfter time.Duration `mapstructure:"stall_after"`
	// CaughtUpWithin is how far behind a partition this node consumes may
	// run and still count as caught up: when the oldest message of its
	// last fetched batch is older, /readyz warns (it stays ready: ingest
	// does not depend on it) naming the partition, as it does for a
	// partition opened but not fetched from yet. A new owner replaying
	// from a snapshot, or a node restarted with a backlog, is catching up.
	// 0 turns the warning off.
	CaughtUpWithin time.Duration `mapstructure:"caught_up_within"`
	// MinWatch is the watch time after which a title enters Continue
	// Watching; CompleteRatio the share of its length that completes it.
	MinWatch      time.Duration `mapstructure:"min_watch"`
	CompleteRatio float64       `mapstructure:"complete_ratio"`
	// HeartbeatCap is deprecated and ignored: watch time between two
	// playback events is min(gap, playhead advance + 5 s) whatever the
	// spacing of heartbeats (docs/domain.md).
	HeartbeatCap time.Duration `mapstructure:"heartbeat_cap"`
	// MaxBookmarks bounds the titles remembered per user.
	MaxBookmarks int `mapstructure:"max_bookmarks"`
	// FutureTolerance caps an event's effect on any watermark at its
	// receivedAt plus this: no client clock moves time forward for others.
	FutureTolerance time.Duration `mapstructure:"future_tolerance"`
	// DetailWindow: a session keeps its events in detail (to place late
	// ones exactly) only while they are within this of the user's newest
	// event; older ones fold into its totals. An event older than that
	// still counts, and the watch clock continues over it when it comes in
	// order. Every stored detail is rewritten with the user, so this sets
	// the bytes written per event.
	DetailWindow time.Duration `mapstructure:"detail_window"`
	// MaxMarks bounds the events a session keeps in detail (the rest is
	// folded into its aggregates); MaxSessions the sessions a user keeps
	// (open, or closed but still re-openable by late history).
	MaxMarks    int `mapstructure:"max_marks"`
	MaxSessions int `mapstructure:"max_sessions"`
	// MaxScreens bounds a session's screens before the first play;
	// MaxNameBytes every stored name and id (longer ones are cut);
	// MaxTraitsBytes a user's identify traits.
	MaxScreens     int `mapstructure:"max_screens"`
	MaxNameBytes   int `mapstructure:"max_name_bytes"`
	MaxTraitsBytes int `mapstructure:"max_traits_bytes"`
	// OverloadShare: while the process uses all its cores and the
	// tracking API is receiving, the sessionizer and the archive keep
	// their busy time to this share of their wall time, so the intake
	// keeps acknowledging; they catch up afterwards. 1 disables it.
	OverloadShare float64 `mapstructure:"overload_share"`
	// HotUsers is how many users' state the sessionizer keeps decoded in
	// memory (over all partitions); Badger stays the truth.
	HotUsers int `mapstructure:"hot_users"`
	// Interactions classifies track events for clicks-to-play: count,
	// once_per_title or ignore, by lower-cased event name; entries extend
	// and override the built-in table (docs/domain.md).
	Interactions map[string]string `mapstructure:"interactions"`
	// Retention is how long the duplicate lists of messages are kept for
	// the archive. Not a key of this section: cmd copies buffer.retention.
	Retention time.Duration `mapstructure:"-"`
	// MaxTxnBytes bounds one Badger transaction (a batch is committed in
	// several when it would exceed it). Not a key: cmd derives it from
	// serve.memtable_bytes.
	MaxTxnBytes int64 `mapstructure:"-"`

	interactions       map[string]string
	noDedup, wallClock bool
	partitions         int
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
		AckWait:         30 * time.Second,
		StallAfter:      2 * time.Minute,
		CaughtUpWithin:  10 * time.Second,
		MinWatch:        2 * time.Minute,
		CompleteRatio:   0.9,
		HeartbeatCap:    time.Minute,
		MaxBookmarks:    100,
		FutureTolerance: 5 * time.Second,
		DetailWindow:    time.Minute,
		MaxMarks:        256,
		MaxSessions:     8,
		MaxScreens:      10,
		MaxNameBytes:    200,
		MaxTraitsBytes:  4096,
		HotUsers:        200000,
		OverloadShare:   0.5,
		Interactions:    map[string]string{},
		Retention:       7 * 24 * time.Hour,
		MaxTxnBytes:     1 << 20,
	}
}

// prepare derives the unexported fields New uses.
func (c *Config) prepare() {
	c.interactions = DefaultInteractions()
	for k, v := range c.Interactions {
		c.interactions[strings.ToLower(strings.TrimSpace(k))] = v
	}
	c.noDedup, c.wallClock = brokenNoDedup, brokenWallClock
}

// clip cuts s to max_name_bytes (at a UTF-8 boundary).
func (c *Config) clip(s string) string {
	if len(s) <= c.MaxNameBytes {
		return s
	}
	n := c.MaxNameBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
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
	pos("detail_window", c.DetailWindow)
	if c.StallAfter < 0 {
		errs = append(errs, fmt.Errorf("process.stall_after: must not be negative (0 = off), got %s", c.StallAfter))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("process.ack_wait: must be at least 1s, got %s", c.AckWait))
	}
	if c.CaughtUpWithin < 0 {
		errs = append(errs, fmt.Errorf("process.caught_up_within: must not be negative (0 = off), got %s", c.CaughtUpWithin))
	}
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
	if c.FutureTolerance < 0 {
		errs = append(errs, fmt.Errorf("process.future_tolerance: must not be negative, got %s", c.FutureTolerance))
	}
	for _, b := range []struct {
		key    string
		v, min int
	}{{"max_marks", c.MaxMarks, 8}, {"max_sessions", c.MaxSessions, 1}, {"max_screens", c.MaxScreens, 1},
		{"max_name_bytes", c.MaxNameBytes, 16}, {"max_traits_bytes", c.MaxTraitsBytes, 0}, {"hot_users", c.HotUsers, 0}} {
		if b.v < b.min {
			errs = append(errs, fmt.Errorf("process.%s: must be at least %d, got %d", b.key, b.min, b.v))
		}
	}
	if c.OverloadShare <= 0 || c.OverloadShare > 1 {
		errs = append(errs, fmt.Errorf("process.overload_share: must be in (0, 1], got %g", c.OverloadShare))
	}
	for name, class := range c.Interactions {
		switch class {
		case ClassCount, ClassOncePerTitle, ClassIgnore:
		default:
			errs = append(errs, fmt.Errorf("process.interactions.%s: must be count, once_per_title or ignore, got %q", name, class))
		}
	}
	return errors.Join(errs...)
}

func (c Config) gap(platform string) time.Duration {
	if g, ok := c.PlatformGaps[platform]; ok {
		return g
	}
	return c.SessionGap
}
