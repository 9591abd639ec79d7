package archive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/event"
)

// Fetcher is a durable pull consumer over one whole stream, with explicit
// acks and unlimited redelivery (*buffer.Consumer satisfies it).
type Fetcher interface {
	Fetch(ctx context.Context, max int, wait time.Duration) ([]*event.Message, error)
}

// pendingCounter is optionally implemented by a Fetcher to feed the lag
// metric with messages not yet delivered.
type pendingCounter interface {
	Pending(ctx context.Context) (pending, ackPending uint64, err error)
}

// ConsumerFactory creates the durable consumer name over stream, starting
// at startSeq (the lake's committed end + 1) and replacing any position an
// existing consumer had: after a crash the older unacknowledged messages
// then come first instead of after AckWait. It must use explicit acks,
// MaxDeliver -1, AckWait = Config.AckWait and MaxAckPending >=
// Config.MaxPending.
type ConsumerFactory interface {
	Consumer(ctx context.Context, stream, name string, startSeq uint64) (Fetcher, error)
	// Bounds is the stream's first and last sequence: the last for the
	// regression check, the first to know which missing sequences are gone.
	Bounds(ctx context.Context, stream string) (first, last uint64, err error)
	// Read reads one message by stream sequence, outside any consumer (its
	// Acker may do nothing): a table fills the hole a lost delivery left in
	// its open range with it. An error wrapping ErrSequenceGone means the
	// stream no longer holds seq (expired or deleted).
	Read(ctx context.Context, stream string, seq uint64) (*event.Message, error)
}

// ErrSequenceGone: the stream no longer holds a sequence.
var ErrSequenceGone = errors.New("archive: sequence no longer in the stream")

// ErrSequenceRegression means a stream is behind the lake's committed end:
// the buffer lost data. The table is not consumed; new messages would
// otherwise be skipped as already archived.
var ErrSequenceRegression = errors.New("archive: stream behind the lake's committed end")

// Deduper answers which lines of an events message are duplicates, as
// the sessionizer decided when it applied the message (one dedup lookup
// per event in the whole pipeline): applied is false until the
// sessionizer has committed the message, and the archive waits for it, so
// lake and serving state agree exactly (*state.Store satisfies it).
type Deduper interface {
	Duplicates(partition int, seq uint64) (dups []uint32, applied bool, err error)
}

// Deps are the archiver's collaborators.
type Deps struct {
	Consumers ConsumerFactory
	// Deduper drops repeated (source, messageId) from the events table;
	// nil keeps every event.
	Deduper Deduper
	// Store overrides the store that Config.URL names (tests, tools).
	Store ObjectStore
	// Pacer makes the archive yield the CPU to the intake under overload
	// (optional; *yield.Governor satisfies it).
	Pacer interface {
		Pace(ctx context.Context, busy time.Duration)
	}
	// Failed receives the items of the events and sessions streams that
	// cannot be applied (docs/format/lake.md); nil only counts and logs
	// them.
	Failed FailedPublisher
	// Erasures names the users whose rows the lake must not keep and the
	// deletion requests to apply to committed objects (optional).
	Erasures Erasures
	// Lease, when set (cluster mode), lets each table write only while
	// this node holds the table's lake lease; nil (one node): always.
	Lease Lease
}

// Lease grants the writer of one table to one node at a time (cluster
// mode, docs/cluster.md). Hold blocks until this node holds the table's
// lease, or ctx ends (then it returns ctx's error). The held context ends
// when the lease is lost; check proves the lease is still held at this
// epoch and is called just before each manifest write (the commit).
type Lease interface {
	Hold(ctx context.Context, table string) (held context.Context, check func(context.Context) error, err error)
}

// ErrFenced means a manifest was not written because this node could not
// prove it still holds the table's lease.
var ErrFenced = errors.New("archive: lake lease not proven; commit withheld")

// Archiver runs one table writer per table.
type Archiver struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	m     *metrics
	store ObjectStore

	tables []tableRunner

	stop     chan struct{}
	stopOnce sync.Once
	mu       sync.Mutex
	abandon  context.CancelFunc
	done     chan struct{}
	running  bool
	closed   bool
	refused  []error // tables refused by the sequence regression check
	crash    crashpoints
}

type tableRunner interface {
	run(ctx context.Context, stop <-chan struct{}) error
	tableName() string
	// standby marks a table another node writes (cluster mode): no lag,
	// never stalled.
	standby(bool)
	// fence sets the lease check run before each manifest write.
	fence(check func(context.Context) error)
	// starting marks the moment the writer began (again) to open its
	// ledger and consumer: stalled counts a start that never completes
	// from it.
	starting()
	lag() (uint64, time.Time)
	stalled(after time.Duration) error
}

// New validates cfg; it opens nothing.
func New(cfg Config, deps Deps, log *slog.Logger, reg prometheus.Registerer) (*Archiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Consumers == nil {
		return nil, errors.New("archive: no consumer factory")
	}
	return &Archiver{cfg: cfg, deps: deps, log: log, m: newMetrics(reg),
		store: deps.Store, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Open opens the object store (checking the bucket) and reads the
// committed ranges of every table.
func (a *Archiver) Open(ctx context.Context) error {
	if a.store == nil {
		st, err := OpenStore(ctx, a.cfg)
		switch {
		case errors.Is(err, ErrUnreachable):
			a.log.Warn("object store unreachable at start-up; archiving waits for it", "err", err)
		case err != nil:
			return fmt.Errorf("opening archive store: %w", err)
		}
		a.store = st
	}
	for _, name := range Tables() {
		a.tables = append(a.tables, a.newTable(name))
	}
	return nil
}

// loadLedger reads the committed end of a table, retrying while the store
// is unreachable.
func (a *Archiver) loadLedger(ctx context.Context, name string) (uint64, error) {
	b := a.newBackoff()
	for {
		rec, err := reconcile(ctx, a.store, name, &a.crash)
		if err == nil && rec != (Reconciled{}) {
			a.log.Info("finished the publication a stopped process left", "table", name,
				"published_ranges", rec.Published, "discarded_staged", rec.Discarded, "compactions", rec.Compactions)
		}
		var l Ledger
		if err == nil {
			l, err = LoadLedger(ctx, a.store, name)
		}
		if err == nil {
			if len(l.Gaps) > 0 || len(l.Overlaps) > 0 {
				a.log.Error("committed ranges are not contiguous", "table", name, "gaps", l.Gaps, "overlaps", l.Overlaps)
			}
			a.log.Info("archive table opened", "table", name, "committed", l.End(), "ranges", len(l.Ranges))
			return l.End(), nil
		}
		a.m.behind.WithLabelValues(name).Set(1)
		a.log.Warn("reading committed ranges; retrying", "table", name, "err", err)
		if !b.sleep(ctx) {
			return 0, ctx.Err()
		}
	}
}

// stageKey is where a flush writes the object with key before its commit.
func (a *Archiver) stageKey(key string) string {
	if brokenUnstaged {
		return key
	}
	return stagingKey(key)
}

// publish makes a committed flush visible to glob readers.
func (a *Archiver) publish(ctx context.Context, m Manifest) error {
	if brokenUnstaged {
		return nil
	}
	return publish(ctx, a.store, m, nil, &a.crash)
}

func (a *Archiver) newTable(name string) tableRunner {
	log := a.log.With("table", name)
	var t tableRunner
	switch name {
	case TableEvents:
		t = &tableWriter[EventRow]{a: a, name: name, stream: tableStreams[name], decode: decodeEvents, owner: eventOwner, log: log}
	case TableSessions:
		t = &tableWriter[SessionRow]{a: a, name: name, stream: tableStreams[name], decode: decodeSession, owner: sessionOwner, log: log}
	default:
		t = &tableWriter[FailedRow]{a: a, name: name, stream: tableStreams[name], decode: decodeFailed, owner: failedOwner, log: log}
	}
	t.starting()
	return t
}

// Store is the opened object store.
func (a *Archiver) Store() ObjectStore { return a.store }

// Run archives until Shutdown (commit the open ranges) or until hard is
// cancelled (abandon them; the buffer redelivers).
func (a *Archiver) Run(hard context.Context) error {
	ctx, cancel := context.WithCancel(hard)
	defer cancel()
	a.mu.Lock()
	if a.running || a.store == nil {
		a.mu.Unlock()
		return errors.New("archive: Run needs Open and runs once")
	}
	a.running, a.abandon = true, cancel
	a.mu.Unlock()
	defer close(a.done)

	errs := make([]error, len(a.tables))
	var wg sync.WaitGroup
	for i, t := range a.tables {
		wg.Go(func() { errs[i] = a.runTable(ctx, t) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runTable runs a table writer: at once on one node; in cluster mode
// whenever this node holds the table's lease, as often as it gains it.
func (a *Archiver) runTable(ctx context.Context, t tableRunner) error {
	if a.deps.Lease == nil {
		a.runRestarting(ctx, t)
		return nil
	}
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-a.stop:
			cancel()
		case <-waitCtx.Done():
		}
	}()
	for {
		t.standby(true)
		held, check, err := a.deps.Lease.Hold(waitCtx, t.tableName())
		if err != nil {
			return nil // stopped or cancelled while another node writes
		}
		t.standby(false)
		t.fence(check)
		a.runRestarting(held, t)
		select {
		case <-a.stop:
			return nil
		default:
		}
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("lake lease lost; open range abandoned, waiting to hold it again", "table", t.tableName())
	}
}

// runRestarting runs t until a.stop closes (its open range committed) or
// ctx ends (abandoned). A run that fails (the stream or its consumer
// unreachable, as while a clustered stream elects a leader, or fetches
// failing for Config.AckWait/2) is started again from the table's
// committed end after a backoff: a table writer never stops for good while
// its node runs and, in cluster mode, still holds the table's lease.
func (a *Archiver) runRestarting(ctx context.Context, t tableRunner) {
	b := a.newBackoff()
	for {
		err := t.run(ctx, a.stop)
		if err == nil {
			return
		}
		a.m.restarts.WithLabelValues(t.tableName()).Inc()
		t.starting()
		a.log.Warn("archive table failed; starting it again from its last commit", "table", t.tableName(), "err", err)
		sleep, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-a.stop:
				cancel()
			case <-sleep.Done():
			}
		}()
		ok := b.sleep(sleep)
		cancel()
		if !ok {
			return
		}
	}
}

// Shutdown commits the open ranges and waits for Run. When ctx ends
// first, the open ranges are abandoned uncommitted.
func (a *Archiver) Shutdown(ctx context.Context) error {
	a.stopOnce.Do(func() { close(a.stop) })
	a.mu.Lock()
	running, abandon := a.running, a.abandon
	a.mu.Unlock()
	if !running {
		return nil
	}
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		abandon()
		<-a.done
		return fmt.Errorf("archive shutdown: open ranges abandoned: %w", ctx.Err())
	}
}

// Healthy reports tables refused by the sequence regression check and
// tables that have not advanced for Config.StallAfter although messages
// wait for them.
func (a *Archiver) Healthy() error {
	a.mu.Lock()
	errs := append([]error(nil), a.refused...)
	tables := a.tables
	a.mu.Unlock()
	for _, t := range tables {
		if err := t.stalled(a.cfg.StallAfter); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close is idempotent; the stores hold no OS resources between calls.
func (a *Archiver) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	return nil
}

// Lag is how far the lake is behind the buffer: messages delivered or
// waiting but not committed, and the publish time of the oldest one held
// (zero when none is held). Ingest backpressure uses it to refuse intake
// before unarchived data could expire from the buffer.
func (a *Archiver) Lag() (messages uint64, oldest time.Time) {
	for _, t := range a.tables {
		n, o := t.lag()
		messages += n
		if !o.IsZero() && (oldest.IsZero() || o.Before(oldest)) {
			oldest = o
		}
	}
	return messages, oldest
}

// backoff is capped exponential backoff with jitter.
type backoff struct {
	min, max, next time.Duration
}

func (a *Archiver) newBackoff() *backoff {
	return &backoff{min: a.cfg.RetryMin, max: a.cfg.RetryMax, next: a.cfg.RetryMin}
}

func (b *backoff) reset() { b.next = b.min }

// sleep waits the next delay; false when ctx ended.
func (b *backoff) sleep(ctx context.Context) bool {
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(b.next*2, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
