// Package buffer runs clickpipe's embedded NATS JetStream server: the
// durable 7-day buffer between ingest and every consumer. It owns the server
// options that the delivery promises depend on (SyncAlways, NoSigs,
// DiscardNew), stream and consumer setup, and thin publish/consume adapters.
package buffer

import (
	"errors"
	"fmt"
	"time"
)

// Durability modes.
const (
	// DurabilityFsync fsyncs every write before JetStream acknowledges it.
	DurabilityFsync = "fsync"
	// DurabilityRelaxed acknowledges after the write reaches the OS; it
	// survives a process crash but not a power loss.
	DurabilityRelaxed = "relaxed"
)

// Stream and subject names. docs/format/buffer.md is the spec.
const (
	EventsStream  = "EVENTS"
	FailedStream  = "FAILED"
	eventsPrefix  = "clickpipe.events."
	FailedSubject = "clickpipe.failed"
	// SessionsStream carries closed sessions from the sessionizer to the
	// archive; publishers set Nats-Msg-Id so a re-publish after a crash is
	// dropped within the stream's duplicate window.
	SessionsStream  = "SESSIONS"
	SessionsSubject = "clickpipe.sessions"
	// DupsStream holds the duplicate lists the partition owners publish
	// for the lake writer (cluster mode with partition ownership;
	// EnsureDups).
	DupsStream     = "DUPS"
	dupsSubjects   = "clickpipe.dups.>"
	maxPayloadSize = 8 << 20
	// dupsBytesPerPartitionDay is DUPS's byte budget per partition and day
	// of retention: an owner publishes at most one record per partition
	// every 2 s, about 120 bytes plus its duplicate lines and the message
	// overhead, 43,200 a day (about 5 MiB of records without duplicate
	// lines); twice that leaves room for the lines.
	dupsBytesPerPartitionDay = 10 << 20
)

// DupsSubject is the subject of partition p's duplicate lists.
func DupsSubject(p int) string { return fmt.Sprintf("clickpipe.dups.%d", p) }

// DupsMaxBytes is the byte limit of stream DUPS: buffer.partitions ×
// days of buffer.retention (rounded up) × 10 MiB, at least 64 MiB; 2.2 GiB
// at the defaults. Reached, the oldest records go first (a lake writer
// that far behind waits and says so on /readyz), and it is part of the
// store the embedded server reserves, so DUPS can never take the room of
// EVENTS or of the lease buckets.
func (c Config) DupsMaxBytes() int64 {
	days := int64((c.Retention + 24*time.Hour - 1) / (24 * time.Hour))
	return max(int64(c.Partitions)*max(days, 1)*dupsBytesPerPartitionDay, 64<<20)
}

// Config is the buffer section of the configuration.
type Config struct {
	// Durability is fsync (default) or relaxed.
	Durability string `mapstructure:"durability"`
	// Retention is how long messages are kept (stream MaxAge).
	Retention time.Duration `mapstructure:"retention"`
	// MaxBytes is the EVENTS stream budget; with DiscardNew a full stream
	// refuses new messages instead of evicting old ones.
	MaxBytes int64 `mapstructure:"max_bytes"`
	// FailedMaxBytes is the FAILED stream budget.
	FailedMaxBytes int64 `mapstructure:"failed_max_bytes"`
	// Partitions is the number of per-user partition subjects.
	Partitions int `mapstructure:"partitions"`
	// Listen optionally exposes a NATS client listener (host:port) for
	// debugging with the nats CLI. Empty (default) means no listener.
	Listen string `mapstructure:"listen"`
	// Cluster is the top-level cluster section, copied in by the
	// configuration (config.Config.Resolve); not a buffer.* key.
	Cluster ClusterConfig `mapstructure:"-"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Durability:     DurabilityFsync,
		Retention:      7 * 24 * time.Hour,
		MaxBytes:       20 << 30,
		FailedMaxBytes: 1 << 30,
		Partitions:     32,
		Cluster:        DefaultClusterConfig(),
	}
}

// Validate reports the first invalid field, named as in config.yaml.
func (c Config) Validate() error {
	var errs []error
	if c.Durability != DurabilityFsync && c.Durability != DurabilityRelaxed {
		errs = append(errs, fmt.Errorf("buffer.durability: %q is neither fsync nor relaxed", c.Durability))
	}
	if c.Retention < time.Minute {
		errs = append(errs, fmt.Errorf("buffer.retention: %s is below the 1m minimum", c.Retention))
	}
	if c.MaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("buffer.max_bytes: %d is below the 1MiB minimum", c.MaxBytes))
	}
	if c.FailedMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("buffer.failed_max_bytes: %d is below the 1MiB minimum", c.FailedMaxBytes))
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("buffer.partitions: %d is outside 1..1024", c.Partitions))
	}
	if c.Cluster.Enabled && c.Durability != DurabilityFsync {
		errs = append(errs, fmt.Errorf("buffer.durability: %q is refused when cluster.enabled is true: "+
			"a replicated acknowledgement is only durable if every replica fsyncs before it acks (docs/cluster.md)", c.Durability))
	}
	errs = append(errs, c.Cluster.Validate())
	return errors.Join(errs...)
}

// Subject is the subject of partition p.
func Subject(p int) string { return fmt.Sprintf("%s%d", eventsPrefix, p) }

// SubjectPartition parses a partition subject back to its number.
func SubjectPartition(subject string) (int, bool) {
	var p int
	if len(subject) <= len(eventsPrefix) || subject[:len(eventsPrefix)] != eventsPrefix {
		return 0, false
	}
	if _, err := fmt.Sscanf(subject[len(eventsPrefix):], "%d", &p); err != nil {
		return 0, false
	}
	return p, true
}
