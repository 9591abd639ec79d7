package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
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
	// Dynamic: partitions are consumed only between Own and Disown
	// (cluster.partition_ownership). False: Run owns every partition at
	// epoch 0 with no fence.
	Dynamic bool
	// Dups publishes the duplicate lists of applied messages for a lake
	// writer on another node (optional; with Dynamic).
	Dups DupsPublisher
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

	cmds     []chan command // per worker
	mu       sync.Mutex
	refused  map[int]error
	owned    map[int]Ownership
	progress map[int]progress // owned partitions: last commit or empty fetch
	dupsDone map[int]dupsMark // relay goroutine: duplicate lists published through
	prepared map[int]preparedConsumer
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
	cmds := make([]chan command, cfg.Workers)
	for i := range cmds {
		cmds[i] = make(chan command)
	}
	return &Processor{cfg: cfg, deps: deps, log: log, m: m, cmds: cmds,
		stopping: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1),
		refused: map[int]error{}, owned: map[int]Ownership{}, progress: map[int]progress{}, dupsDone: map[int]dupsMark{},
		prepared: map[int]preparedConsumer{}}, nil
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
		var static []int
		for part := range p.deps.Partitions {
			if p.owner(part) == w && !p.deps.Dynamic {
				static = append(static, part)
			}
		}
		wg.Go(func() { errs[w] = p.runWorker(ctx, p.cmds[w], static) })
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

// Healthy reports partitions refused by the sequence regression check and
// owned partitions that have not advanced for Config.StallAfter.
func (p *Processor) Healthy() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, err := range p.refused {
		errs = append(errs, err)
	}
	if after := p.cfg.StallAfter; after > 0 {
		ids := slices.Sorted(maps.Keys(p.progress))
		for _, id := range ids {
			if pr := p.progress[id]; time.Since(pr.at) >= after {
				errs = append(errs, fmt.Errorf("process: partition %d has not advanced for %s (checkpoint %d; fetches or commits failing, see the log)",
					id, time.Since(pr.at).Round(time.Second), pr.checkpoint))
			}
		}
	}
	return errors.Join(errs...)
}

// CatchingUp names the partitions this node consumes that are not caught
// up (Config.CaughtUpWithin): opened but not fetched from yet, or whose
// last fetched batch began with an older message. It is a warning on
// /readyz, not a readiness condition.
func (p *Processor) CatchingUp() error {
	within := p.cfg.CaughtUpWithin
	if within <= 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(p.progress)) {
		switch pr := p.progress[id]; {
		case !pr.fetched:
			errs = append(errs, fmt.Errorf("partition %d opening", id))
		case pr.behind > within:
			errs = append(errs, fmt.Errorf("partition %d catching up: %s behind at checkpoint %d",
				id, pr.behind.Round(time.Second), pr.checkpoint))
		}
	}
	return errors.Join(errs...)
}

// progress is when an owned partition last committed or found nothing to
// do, its checkpoint then, and how far behind its last fetched batch began
// (fetched: it has fetched since it was opened).
type progress struct {
	at         time.Time
	checkpoint uint64
	behind     time.Duration
	fetched    bool
}

// noteProgress records the partitions of a round that committed or were
// caught up (one lock per round).
func (p *Processor) noteProgress(parts []*part) {
	if len(parts) == 0 {
		return
	}
	now := time.Now()
	for _, pt := range parts {
		if !pt.resumed && pt.ps.LastSeq > pt.openedAt.seq {
			// Where a handover or a reopen has consumed again (one line
			// per open with ownership; the three-binary suite times
			// handovers to it as well as to "owning partition").
			pt.resumed = true
			if p.deps.Dynamic {
				p.log.Info("partition resumed: first commit since its open", "partition", pt.id, "epoch", pt.own.Epoch,
					"checkpoint", pt.ps.LastSeq, "after", now.Sub(pt.openedAt.at).Round(time.Millisecond))
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pt := range parts {
		if _, ok := p.progress[pt.id]; ok {
			p.progress[pt.id] = progress{at: now, checkpoint: pt.ps.LastSeq, behind: pt.behind, fetched: true}
		}
	}
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
	id       int
	f        Fetcher
	ps       state.Checkpoint
	lastData time.Time
	lagAt    time.Time     // last idle (watermark-only) commit
	behind   time.Duration // age of the oldest message of the last fetched batch (0: none)
	strings  *interner     // of the partition's worker: decoding only
	users    map[string]*userSlot
	titles   map[string]*state.Title
	paths    map[string]int64
	batch    uint64
	fresh    state.Freshness
	own      Ownership
	epoch    uint64 // recorded beside the checkpoint (0: none)
	// delivery is the last delivery sequence fetched (lostDelivery).
	delivery uint64
	// openedAt: when the part was opened, at which checkpoint; resumed:
	// it has committed past that checkpoint since.
	openedAt struct {
		at  time.Time
		seq uint64
	}
	resumed bool
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
// refused partition. The stream calls are bounded by jsTimeout (the
// attempt's, openAttemptTimeout).
func (p *Processor) openPartition(ctx context.Context, id int, o Ownership, jsTimeout time.Duration) (*part, error) {
	pt := &part{id: id, own: o, lastData: time.Now(), strings: newInterner(), users: map[string]*userSlot{},
		titles: map[string]*state.Title{}, paths: map[string]int64{}}
	if err := p.deps.Store.View(func(txn *badger.Txn) error { return loadPart(txn, pt) }); err != nil {
		return nil, fmt.Errorf("partition %d: %w", id, err)
	}
	p.publishPart(pt)
	pt.openedAt.at, pt.openedAt.seq = time.Now(), pt.ps.LastSeq
	ctx, cancel := context.WithTimeout(ctx, jsTimeout)
	defer cancel()
	dr, direct := p.deps.Consumers.(DirectReader)
	last, err := p.streamReaches(ctx, pt.ps.LastSeq, dr)
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
	switch pt.f = p.takePrepared(id, pt.ps.LastSeq+1); {
	case pt.f != nil:
	case direct:
		pt.f = p.newBridge(id, pt.ps.LastSeq+1, dr)
	default:
		if pt.f, err = p.deps.Consumers.PartitionConsumer(ctx, id, pt.ps.LastSeq+1); err != nil {
			return nil, fmt.Errorf("partition %d: %w", id, err)
		}
	}
	if d, ok := pt.f.(interface{ DeliveredAtOpen() uint64 }); ok {
		pt.delivery = d.DeliveredAtOpen()
	}
	p.m.watermark.WithLabelValues(partLabel(id)).Set(float64(pt.ps.Watermark / 1000))
	return pt, nil
}

// streamReaches returns the events stream's last sequence, or checkpoint
// itself when a replica answers a direct read at or after it (dr set): the
// regression check needs only to know the stream reaches the checkpoint,
// and a replica answers while the stream's leader may be in its election
// (nothing can be behind checkpoint 0).
func (p *Processor) streamReaches(ctx context.Context, checkpoint uint64, dr DirectReader) (uint64, error) {
	if dr != nil {
		if checkpoint == 0 {
			return 0, nil
		}
		dctx, cancel := context.WithTimeout(ctx, directReadTimeout/2)
		held, err := dr.HoldsFrom(dctx, checkpoint)
		cancel()
		if err == nil && held {
			return checkpoint, nil
		}
	}
	return p.deps.Consumers.LastSeq(ctx)
}

// loadPart reads a partition's checkpoint, title shares and paths.
func loadPart(txn *badger.Txn, pt *part) error {
	var err error
	if pt.ps, err = state.ReadCheckpoint(txn, pt.id); err != nil {
		return err
	}
	if pt.epoch, err = state.ReadEpoch(txn, pt.id); err != nil {
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
	pt.fresh = state.Freshness{Watermark: fromMs(pt.ps.Watermark), Checkpoint: pt.ps.LastSeq}
	l.SetFreshness(pt.id, pt.fresh)
}
