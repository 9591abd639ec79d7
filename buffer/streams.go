package buffer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfigs are the stream definitions the configuration asks for.
func (b *Buffer) StreamConfigs() []jetstream.StreamConfig {
	subjects := make([]string, b.cfg.Partitions)
	for p := range subjects {
		subjects[p] = Subject(p)
	}
	base := b.baseStream()
	events := base
	events.Name = EventsStream
	events.Description = "clickpipe accepted events, one group-commit message per publish"
	events.Subjects = subjects
	events.MaxBytes = b.cfg.MaxBytes
	// Direct reads (direct.go): the sessionizer reads a partition from
	// any in-sync replica while its consumer is being created.
	events.AllowDirect = true
	failed := base
	failed.Name = FailedStream
	failed.Description = "clickpipe items refused by ingest, with their reasons"
	failed.Subjects = []string{FailedSubject}
	failed.MaxBytes = b.cfg.FailedMaxBytes
	sessions := base
	sessions.Name = SessionsStream
	sessions.Description = "clickpipe closed sessions, for the lake"
	sessions.Subjects = []string{SessionsSubject}
	sessions.MaxBytes = b.cfg.FailedMaxBytes
	sessions.Duplicates = 10 * time.Minute
	return []jetstream.StreamConfig{events, failed, sessions}
}

// baseStream is what every stream of the buffer shares: file storage,
// limits retention for buffer.retention, the cluster's replicas, writes
// refused when full.
func (b *Buffer) baseStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		Storage:     jetstream.FileStorage,
		Replicas:    b.replicas(),
		MaxAge:      b.cfg.Retention,
		MaxMsgSize:  maxPayloadSize,
		Duplicates:  0,
		PersistMode: jetstream.DefaultPersistMode,
	}
}

// dupsConfig is stream DUPS: like the others, except that the oldest
// records go when it is full (a record is a convenience the lake writer
// can wait for, never the only copy of an event).
func (b *Buffer) dupsConfig() jetstream.StreamConfig {
	dups := b.baseStream()
	dups.Name = DupsStream
	dups.Description = "clickpipe duplicate lists of applied events messages, for the lake writer"
	dups.Subjects = []string{dupsSubjects}
	dups.Discard = jetstream.DiscardOld
	dups.MaxBytes = b.cfg.DupsMaxBytes()
	dups.Duplicates = 2 * time.Minute
	return dups
}

// EnsureDups creates stream DUPS, or brings an existing one's limits to
// the configuration (a DUPS created before it had a byte limit gets one).
// Peers starting together race to create it: the caller retries.
func (b *Buffer) EnsureDups(ctx context.Context) error {
	if err := b.ensureStream(ctx, b.dupsConfig()); err != nil {
		return fmt.Errorf("stream %s: %w", DupsStream, err)
	}
	return nil
}

func (b *Buffer) ensureStreams(ctx context.Context) error {
	for _, want := range b.StreamConfigs() {
		if err := b.ensureStream(ctx, want); err != nil {
			return fmt.Errorf("stream %s: %w", want.Name, err)
		}
	}
	return nil
}

// ensureStream creates the stream, or checks an existing one. Settings that
// would change what is stored where (subjects, storage, retention and
// discard policy) must match; limits (max age, max bytes) are updated and the
// change is logged.
func (b *Buffer) ensureStream(ctx context.Context, want jetstream.StreamConfig) error {
	s, err := b.js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := b.js.CreateStream(ctx, want); err != nil {
			return fmt.Errorf("creating: %w", err)
		}
		b.log.Info("created stream", "stream", want.Name, "subjects", len(want.Subjects))
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking up: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading info: %w", err)
	}
	have := info.Config
	if err := compatible(have, want); err != nil {
		return err
	}
	if have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes && have.MaxMsgSize == want.MaxMsgSize &&
		have.Replicas == want.Replicas && have.AllowDirect == want.AllowDirect {
		return nil
	}
	upd := have
	upd.MaxAge, upd.MaxBytes, upd.MaxMsgSize = want.MaxAge, want.MaxBytes, want.MaxMsgSize
	upd.Replicas, upd.AllowDirect = want.Replicas, want.AllowDirect
	if _, err := b.js.UpdateStream(ctx, upd); err != nil {
		return fmt.Errorf("updating limits: %w", err)
	}
	b.log.Warn("updated stream limits to match configuration", "stream", want.Name,
		"max_age_was", have.MaxAge, "max_age", want.MaxAge,
		"max_bytes_was", have.MaxBytes, "max_bytes", want.MaxBytes,
		"replicas_was", have.Replicas, "replicas", want.Replicas, "allow_direct", want.AllowDirect)
	return nil
}

func compatible(have, want jetstream.StreamConfig) error {
	var errs []error
	if !slices.Equal(sortedCopy(have.Subjects), sortedCopy(want.Subjects)) {
		errs = append(errs, fmt.Errorf("%w: it has %d partition subjects, the configuration asks for %d "+
			"(buffer.partitions cannot change on an existing data dir: users would move partitions)",
			ErrIncompatible, len(have.Subjects), len(want.Subjects)))
	}
	if have.Storage != want.Storage {
		errs = append(errs, fmt.Errorf("%w: storage is %s, want %s", ErrIncompatible, have.Storage, want.Storage))
	}
	if have.Retention != want.Retention {
		errs = append(errs, fmt.Errorf("%w: retention policy is %s, want %s", ErrIncompatible, have.Retention, want.Retention))
	}
	if have.Discard != want.Discard {
		errs = append(errs, fmt.Errorf("%w: discard policy is %s, want %s (DiscardOld would evict unarchived data)",
			ErrIncompatible, have.Discard, want.Discard))
	}
	if have.PersistMode != want.PersistMode {
		errs = append(errs, fmt.Errorf("%w: persist mode is async, which acknowledges before fsync", ErrIncompatible))
	}
	return errors.Join(errs...)
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// maxStore is the file store the embedded server may use: exactly the
// stream budgets plus the buckets' and a margin, instead of the server's
// default (75 % of the disk at start-up), so the limit is what config says
// and the disk watermark, not the server, guards free space. SESSIONS
// shares FAILED's budget; in cluster mode DUPS is counted too (the cluster
// package's members and leases buckets are a few KiB, inside the margin).
// A stream without a byte limit would eat into the others': once the sum
// of what is stored passes this limit, every write to every stream fails,
// lease renewals included.
func (b *Buffer) maxStore() int64 {
	store := b.cfg.MaxBytes + 2*b.cfg.FailedMaxBytes + 2*bucketBytes + 64<<20
	if b.cfg.Cluster.Enabled {
		store += b.cfg.DupsMaxBytes()
	}
	return store
}

// replicas is the replication factor of streams and KV buckets.
func (b *Buffer) replicas() int {
	if brokenR1Streams {
		return 1
	}
	return b.cfg.Cluster.StreamReplicas()
}

// Replicas is the replication factor this buffer gives streams and KV
// buckets (1 on a single node).
func (b *Buffer) Replicas() int { return b.replicas() }
