package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/internal/httpx"
)

// Publisher stores messages in the buffer and returns once they are
// acknowledged (after fsync in fsync mode). *buffer.Buffer satisfies it.
type Publisher interface {
	Publish(ctx context.Context, partition int, body []byte, hdr map[string]string) (uint64, error)
	PublishFailed(ctx context.Context, body []byte, hdr map[string]string) (uint64, error)
}

// Gate decides whether intake is allowed right now (disk watermark, stream
// fullness, consumer lag). A non-nil error answers 503 + Retry-After.
type Gate interface {
	Admit() error
}

// Deps are ingest's collaborators.
type Deps struct {
	Publisher Publisher
	// Partitions is the number of event partitions of the buffer.
	Partitions int
	// Gate may be nil: always admit.
	Gate Gate
	// CheckID may be nil: event.CheckID.
	CheckID IDChecker
	// RequireFailedStored answers 503 when a request's invalid items
	// cannot be stored in the failed stream, although its valid events
	// were (the behaviour before issue 12, kept as the reliability
	// suite's negative control). False: the invalid items are counted and
	// logged as dropped and the request is answered by its valid events.
	RequireFailedStored bool
	// Suppressor may be nil: nobody is suppressed.
	Suppressor Suppressor
}

// Suppressor says whether a user id is suppressed (docs/privacy.md);
// *regulation.Registry satisfies it from memory.
type Suppressor interface {
	Suppressed(id string) bool
}

// Ingest is the tracking API.
type Ingest struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	m       *metrics
	keys    *keyring
	norm    normaliser
	lim     *limiter
	trusted []netip.Prefix
	com     *committer
	hub     *liveHub
	perIP   *ipGate
	now     func() time.Time
	// bodies recycles request body buffers (*bytes.Buffer).
	bodies sync.Pool

	// admitMu orders admissions (read side) against Shutdown (write side)
	// so inflight.Add never races inflight.Wait.
	admitMu sync.RWMutex
	running atomic.Bool
	// stopped is set by Shutdown or a cancelled Run. Requests are admitted
	// before Run starts too (the HTTP server may accept first: the
	// lifecycle starts stages concurrently); their batches wait in the
	// committer's queues for the publishers.
	stopped  atomic.Bool
	started  atomic.Bool
	inflight sync.WaitGroup
	runDone  chan struct{}
}

// New validates cfg and allocates; it starts nothing.
func New(cfg Config, deps Deps, log *slog.Logger, reg prometheus.Registerer) (*Ingest, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingest config: %w", err)
	}
	if deps.Publisher == nil {
		return nil, errors.New("ingest: no publisher")
	}
	if deps.Partitions < 1 {
		return nil, fmt.Errorf("ingest: %d partitions", deps.Partitions)
	}
	trusted, _ := parsePrefixes(cfg.TrustedProxies) // validated above
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering ingest metrics: %w", err)
	}
	in := &Ingest{
		cfg: cfg, deps: deps, log: log, m: m, keys: newKeyring(cfg.Sources),
		norm: newNormaliser(cfg, deps.CheckID), lim: newLimiter(cfg.RateLimit, cfg.RateBurst),
		trusted: trusted, hub: newLiveHub(cfg, m), now: time.Now,
		runDone: make(chan struct{}), perIP: newIPGate(cfg.MaxRequestsPerIP),
	}
	in.bodies.New = func() any { return new(bytes.Buffer) }
	in.com = newCommitter(deps.Partitions, cfg.Publishers, int(cfg.CommitMaxBytes), cfg.CommitLinger, in.now)
	return in, nil
}

// Run publishes group-commit messages until Shutdown has drained them, and
// returns nil then. Cancelling hard fails in-flight publishes (their
// requests get 503) and returns.
func (in *Ingest) Run(hard context.Context) error {
	if !in.started.CompareAndSwap(false, true) {
		return errors.New("ingest: Run called twice")
	}
	defer close(in.runDone)
	var wg sync.WaitGroup
	for _, q := range in.com.queues {
		wg.Go(func() { in.com.work(q, in.publishBatch, hard, in.cfg.PublishTimeout) })
	}
	wg.Go(in.com.lingerLoop)
	wg.Go(in.hub.run)
	in.running.Store(true)
	stopWatch := context.AfterFunc(hard, func() {
		in.running.Store(false)
		in.stopped.Store(true)
		in.hub.close()
		in.com.stop()
	})
	defer stopWatch()
	wg.Wait()
	return nil
}

// Shutdown stops intake, publishes what is pending, waits for the acks and
// for Run to return. Call it after the HTTP server has shut down.
func (in *Ingest) Shutdown(ctx context.Context) error {
	in.admitMu.Lock()
	in.running.Store(false)
	in.stopped.Store(true)
	in.admitMu.Unlock()
	in.hub.close()
	in.com.hurry()
	done := make(chan struct{})
	go func() {
		in.inflight.Wait()
		in.com.stop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("ingest shutdown: %w", ctx.Err())
	}
	if !in.started.Load() {
		return nil
	}
	select {
	case <-in.runDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ingest shutdown: waiting for publishers: %w", ctx.Err())
	}
}

// admit registers an in-flight request; false once stopping.
func (in *Ingest) admit() bool {
	in.admitMu.RLock()
	defer in.admitMu.RUnlock()
	if in.stopped.Load() {
		return false
	}
	in.inflight.Add(1)
	return true
}

// publishBatch publishes one sealed batch and feeds live subscribers.
func (in *Ingest) publishBatch(ctx context.Context, b *batch) error {
	start := time.Now()
	seq, err := in.deps.Publisher.Publish(ctx, b.p, b.enc.Bytes(), batchHeader(b.enc.Count()))
	b.seq = seq
	in.m.pubDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		in.m.publishFails.WithLabelValues("events").Inc()
		in.log.Warn("publish failed", "partition", b.p, "events", b.enc.Count(), "err", err)
		return fmt.Errorf("%w: partition %d: %w", ErrPublish, b.p, err)
	}
	in.m.msgBytes.Observe(float64(b.enc.Len()))
	in.m.msgEvents.Observe(float64(b.enc.Count()))
	in.hub.publish(b)
	return nil
}

// ConnLimits are the connection limits of the ingest listener, for
// httpx.Guard: the configured caps, trusted proxies exempt from the
// per-address one, and a recording of header bytes for the
// Content-Length + Transfer-Encoding check.
func (in *Ingest) ConnLimits() httpx.ConnLimits {
	return httpx.ConnLimits{
		Max: in.cfg.MaxConnections, Reserve: in.cfg.HealthReserve, PerIP: in.cfg.MaxConnectionsPerIP,
		Exempt: in.trusted, Rejected: in.m.connRejected.Inc, RecordBytes: headerRecordBytes,
	}
}

// headerRecordBytes is how much of each connection's input is kept to
// find a chunked request's raw header block.
const headerRecordBytes = 8 << 10

// Handler is the tracking API, to be mounted at "/" on the ingest listener.
func (in *Ingest) Handler() http.Handler { return http.HandlerFunc(in.serveHTTP) }

// LiveHandler serves GET /v1/events/live (server-sent events); mount it on
// the query listener behind bearer authentication.
func (in *Ingest) LiveHandler() http.Handler { return http.HandlerFunc(in.serveLive) }
