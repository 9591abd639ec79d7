package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/state"
)

// Store is the serving state as the sessionizer needs it
// (*state.Store satisfies it).
type Store interface {
	View(fn func(txn *badger.Txn) error) error
	// Update runs fn once and commits its writes durably in one
	// transaction.
	Update(fn func(txn *badger.Txn) error) error
}

// Fetcher pulls a partition's messages (*buffer.Consumer satisfies it).
type Fetcher interface {
	Fetch(ctx context.Context, max int, wait time.Duration) ([]*event.Message, error)
}

// Consumers creates the durable per-partition consumers and reports the
// events stream's last sequence for the regression check.
type Consumers interface {
	PartitionConsumer(ctx context.Context, partition int, startSeq uint64) (Fetcher, error)
	LastSeq(ctx context.Context) (uint64, error)
}

// SessionPublisher publishes closed sessions to the lake stream
// (*buffer.Buffer satisfies it).
type SessionPublisher interface {
	PublishSession(ctx context.Context, body []byte, msgID string) (uint64, error)
}

// Deps are the processor's collaborators.
type Deps struct {
	Store      Store
	Consumers  Consumers
	Sessions   SessionPublisher
	Partitions int
	// Live receives what each commit made visible (optional).
	Live *state.Live
	// Controls publishes the control messages of identity merges to a
	// partition's subject (*buffer.Buffer satisfies it); without it, an
	// anonymous id in another partition is not merged.
	Controls ControlPublisher
	// Erasures skips events of erased users and Forgets is told when a
	// regulation's forget message was applied (both optional;
	// *regulation.Registry satisfies both).
	Erasures Erasures
	Forgets  ForgetReporter
	// Pacer makes the workers yield the CPU to the intake under overload
	// (optional; *yield.Governor satisfies it).
	Pacer Pacer
}

// ControlPublisher stores a message on partition p's subject.
type ControlPublisher interface {
	Publish(ctx context.Context, p int, body []byte, hdr map[string]string) (uint64, error)
}

// Pacer is told how long a round of work took and may sleep to yield.
type Pacer interface {
	Pace(ctx context.Context, busy time.Duration)
}

// ErrSequenceRegression means the stream is behind a partition's
// checkpoint: JetStream lost data. The partition is not consumed.
var ErrSequenceRegression = errors.New("process: stream behind checkpoint")

// Processor is the sessionizer pool.
type Processor struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	m    *metrics

	stopping chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	wake     chan struct{}

	mu      sync.Mutex
	refused map[int]error
}

// New validates cfg and deps; it starts nothing.
func New(cfg Config, deps Deps, log *slog.Logger, reg prometheus.Registerer) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("process config: %w", err)
	}
	if deps.Store == nil || deps.Consumers == nil || deps.Sessions == nil || deps.Partitions <= 0 {
		return nil, errors.New("process: deps need Store, Consumers, Sessions and Partitions > 0")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	cfg.prepare()
	cfg.partitions = deps.Partitions
	if deps.Live == nil {
		deps.Live = state.NewLive(deps.Partitions)
	}
	return &Processor{cfg: cfg, deps: deps, log: log, m: m,
		stopping: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1),
		refused: map[int]error{}}, nil
}

// owner is the one place that assigns partitions to workers.
func (p *Processor) owner(partition int) int { return partition % p.cfg.Workers }

// Run consumes until Shutdown (returns nil once drained) or until hard is
// cancelled (in-flight batches are abandoned; JetStream redelivers them).
func (p *Processor) Run(hard context.Context) error {
	defer close(p.done)
	ctx, cancel := context.WithCancel(hard)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, p.cfg.Workers)
	for w := range p.cfg.Workers {
		var mine []int
		for part := range p.deps.Partitions {
			if p.owner(part) == w {
				mine = append(mine, part)
			}
		}
		wg.Go(func() { errs[w] = p.worker(ctx, mine) })
	}
	relayDone := make(chan error, 1)
	go func() { relayDone <- p.relay(ctx) }()
	wg.Wait()
	p.stopOnce.Do(func() { close(p.stopping) })
	p.signalRelay()
	err := errors.Join(append(errs, <-relayDone)...)
	if hard.Err() != nil {
		return nil // abandoned on purpose
	}
	return err
}

// Shutdown stops fetching, lets every worker commit and ack its in-flight
// batch, flushes the outbox once and waits for Run to return.
func (p *Processor) Shutdown(ctx context.Context) error {
	p.stopOnce.Do(func() { close(p.stopping) })
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("process shutdown: %w", ctx.Err())
	}
}

// Healthy reports partitions refused by the sequence regression check.
func (p *Processor) Healthy() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, err := range p.refused {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p *Processor) stopped() bool {
	select {
	case <-p.stopping:
		return true
	default:
		return false
	}
}

// part is one partition as its worker sees it: its checkpoint and the
// in-memory state of its users, titles and paths, which is exactly what
// the store holds after the last commit (a failed commit drops the part
// and the partition is opened again from the store).
type part struct {
	id        int
	f         Fetcher
	ps        state.Checkpoint
	lastData  time.Time
	lagAt     time.Time // last idle (watermark-only) commit
	lagPolled time.Time
	strings   *interner // of the partition's worker: decoding only
	users     map[string]*userSlot
	titles    map[string]*state.Title
	paths     map[string]int64
	batch     uint64
	fresh     state.Freshness
}

// worker is the single writer of its partitions. Each partition fetches
// in its own goroutine (a fetch waits up to fetch_wait for a full batch,
// so fetching one partition after another would leave the worker idle for
// fetch_wait per partition); the worker applies the fetched batches one at
// a time, and a partition fetches again only once its batch is committed.
func (p *Processor) worker(ctx context.Context, ids []int) error {
	parts := p.openParts(ctx, ids)
	if len(parts) == 0 {
		// A worker with no usable partition waits for the end: Shutdown,
		// or hard cancellation, which must not wait for Shutdown.
		select {
		case <-p.stopping:
		case <-ctx.Done():
		}
		return nil
	}
	fctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	ready := make(chan fetched)
	again := make([]chan struct{}, len(parts))
	for i := range parts {
		again[i] = make(chan struct{}, 1)
		again[i] <- struct{}{}
		wg.Go(func() { p.fetchLoop(fctx, parts, i, again[i], ready) })
	}
	for live := len(parts); live > 0; {
		var round []fetched
		select {
		case r := <-ready:
			round = append(round, r)
		case <-ctx.Done():
			return nil // abandoned: JetStream redelivers
		}
		// Group commit: every other partition whose fetch is ready joins
		// the round, so the round costs one transaction (one fsync).
	drain:
		for len(round) < len(parts) {
			select {
			case r := <-ready:
				round = append(round, r)
			default:
				break drain
			}
		}
		var active []fetched
		for _, r := range round {
			if r.done {
				live--
			} else {
				active = append(active, r)
			}
		}
		began := time.Now()
		failed := p.handle(ctx, parts, active)
		if ctx.Err() != nil {
			return nil
		}
		if p.deps.Pacer != nil {
			p.deps.Pacer.Pace(ctx, time.Since(began))
		}
		if len(failed) > 0 {
			p.sleep(ctx, time.Second)
		}
		for _, slot := range failed {
			// Redelivery order after a failure is not guaranteed (a newer
			// message may arrive before the nak'ed ones and move the
			// checkpoint past them), and the partition's memory holds
			// uncommitted changes: reopen it from its committed checkpoint.
			if reopened, err := p.openPartition(ctx, parts[slot].id); err != nil {
				p.log.Error("reopening partition", "partition", parts[slot].id, "err", err)
			} else if reopened != nil {
				parts[slot] = reopened
			}
		}
		for _, r := range active {
			again[r.slot] <- struct{}{}
		}
	}
	return nil
}

// fetched is one fetch of parts[slot], or done once its fetcher stopped.
type fetched struct {
	slot int
	msgs []*event.Message
	at   time.Time // when the fetch began
	err  error
	done bool
}

// fetchLoop fetches parts[slot] each time the worker says again; the
// worker owns the part between handing it out and saying again.
func (p *Processor) fetchLoop(ctx context.Context, parts []*part, slot int, again <-chan struct{}, ready chan<- fetched) {
	for {
		select {
		case <-again:
		case <-ctx.Done():
			return
		}
		r := fetched{slot: slot, done: p.stopped(), at: time.Now()}
		if !r.done {
			r.msgs, r.err = parts[slot].f.Fetch(ctx, p.cfg.FetchBatch, p.cfg.FetchWait)
		}
		select {
		case ready <- r:
		case <-ctx.Done():
			return
		}
		if r.done {
			return
		}
	}
}

// openParts opens the worker's partitions, retrying each until stopped:
// a transient failure (stream info, consumer creation) must not leave a
// partition unconsumed.
func (p *Processor) openParts(ctx context.Context, ids []int) []*part {
	var parts []*part
	for _, id := range ids {
		for {
			pt, err := p.openPartition(ctx, id)
			if err == nil {
				if pt != nil {
					parts = append(parts, pt)
				}
				break
			}
			if ctx.Err() != nil || p.stopped() {
				return nil
			}
			p.log.Error("opening partition; retrying", "partition", id, "err", err)
			p.sleep(ctx, time.Second)
		}
	}
	return parts
}

func (p *Processor) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-p.stopping:
	case <-t.C:
	}
}

// openPartition loads the checkpoint, runs the sequence regression check
// and creates the consumer at checkpoint + 1. It returns nil for a
// refused partition.
func (p *Processor) openPartition(ctx context.Context, id int) (*part, error) {
	pt := &part{id: id, lastData: time.Now(), strings: newInterner(), users: map[string]*userSlot{},
		titles: map[string]*state.Title{}, paths: map[string]int64{}}
	if err := p.deps.Store.View(func(txn *badger.Txn) error { return loadPart(txn, pt) }); err != nil {
		return nil, fmt.Errorf("partition %d: %w", id, err)
	}
	p.publishPart(pt)
	last, err := p.deps.Consumers.LastSeq(ctx)
	if err != nil {
		return nil, fmt.Errorf("partition %d: reading stream state: %w", id, err)
	}
	if last < pt.ps.LastSeq {
		err := fmt.Errorf("%w: partition %d checkpoint %d, stream last sequence %d", ErrSequenceRegression, id, pt.ps.LastSeq, last)
		p.log.Error("refusing partition", "partition", id, "err", err)
		p.mu.Lock()
		p.refused[id] = err
		p.mu.Unlock()
		p.m.regression.WithLabelValues(partLabel(id)).Set(1)
		return nil, nil
	}
	p.m.regression.WithLabelValues(partLabel(id)).Set(0)
	p.m.checkpoint.WithLabelValues(partLabel(id)).Set(float64(pt.ps.LastSeq))
	if pt.f, err = p.deps.Consumers.PartitionConsumer(ctx, id, pt.ps.LastSeq+1); err != nil {
		return nil, fmt.Errorf("partition %d: %w", id, err)
	}
	p.m.watermark.WithLabelValues(partLabel(id)).Set(float64(pt.ps.Watermark / 1000))
	return pt, nil
}

// loadPart reads a partition's checkpoint, title shares and paths.
func loadPart(txn *badger.Txn, pt *part) error {
	var err error
	if pt.ps, err = state.ReadCheckpoint(txn, pt.id); err != nil {
		return err
	}
	if err := state.LoadTitles(txn, pt.id, func(asset string, t state.Title) { pt.titles[asset] = &t }); err != nil {
		return err
	}
	_, err = state.Get(txn, state.PathsKey(pt.id), func(v []byte) error {
		paths, err := state.DecodePaths(v)
		pt.paths = paths
		return err
	})
	if err != nil {
		return fmt.Errorf("reading paths: %w", err)
	}
	return nil
}

// publishPart puts a freshly loaded partition into the live view.
func (p *Processor) publishPart(pt *part) {
	l := p.deps.Live
	l.ResetPartition(pt.id)
	for asset, t := range pt.titles {
		l.PutTitle(pt.id, asset, *t)
	}
	l.PutPaths(pt.id, pt.paths)
	pt.fresh = state.Freshness{Watermark: fromMs(pt.ps.Watermark)}
	l.SetFreshness(pt.id, pt.fresh)
}
