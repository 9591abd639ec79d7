package process

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// DirectReader is implemented by Consumers that can read the events
// stream without a consumer, from any in-sync replica (cluster mode's
// buffer: JetStream's batched direct get). With it, an open does not wait
// for JetStream's meta group: right after a node's crash, creating a
// consumer (and reading the stream's state from its leader) waits for
// elections, seconds during which every surviving replica could already
// hand out the partition's messages.
type DirectReader interface {
	// ReadPartition returns up to max messages of partition from stream
	// sequence from on, in order, as a replica holds them (a lagging one
	// returns fewer, never a gap), and how many more it holds. The
	// messages are reads: their Acker does nothing.
	ReadPartition(ctx context.Context, partition int, from uint64, max int) (msgs []*event.Message, pending uint64, err error)
	// HoldsFrom reports whether a replica holds a message at or after
	// seq: the stream has not gone back behind it. False may be a
	// replica that lags (ask Consumers.LastSeq then).
	HoldsFrom(ctx context.Context, seq uint64) (bool, error)
}

// directReadTimeout bounds one direct read of a bridge.
const directReadTimeout = 2 * time.Second

// bridge is the Fetcher of a partition opened with a DirectReader and no
// prepared consumer. Its first Fetch starts creating the partition's
// consumer at the open's checkpoint + 1 in the background (retrying like
// an open); until that consumer exists, each Fetch reads the partition
// directly, from where the previous one ended; from then on it fetches
// from the consumer, which delivers again what was read directly (stream
// order, from the open's checkpoint + 1): those are at or below the
// checkpoint by then and skipped as applied, like any redelivery. The
// worker treats both kinds of batch alike: direct reads have nothing to
// acknowledge, and a failed commit reopens the partition either way.
type bridge struct {
	p    *Processor
	id   int
	from uint64 // the consumer's start
	dr   DirectReader

	// Touched by the fetch goroutine only.
	next     uint64 // next sequence to read directly
	read     int    // messages read directly
	readErrs int    // direct reads failed
	began    time.Time

	pending atomic.Uint64 // as the last direct read found it

	start  sync.Once
	ready  chan struct{} // closed once f is set
	f      Fetcher
	mu     sync.Mutex
	closed bool
	cancel context.CancelFunc
}

func (p *Processor) newBridge(id int, from uint64, dr DirectReader) *bridge {
	return &bridge{p: p, id: id, from: from, next: from, dr: dr, ready: make(chan struct{})}
}

// consumer is the partition's consumer once created (nil before).
func (b *bridge) consumer() Fetcher {
	select {
	case <-b.ready:
		return b.f
	default:
		return nil
	}
}

// Fetch reads up to n messages: from the consumer once it exists,
// directly before. A direct read that finds nothing (or fails: no replica
// answers) waits up to wait for the consumer, then returns no messages.
func (b *bridge) Fetch(ctx context.Context, n int, wait time.Duration) ([]*event.Message, error) {
	b.start.Do(func() { b.create(ctx) })
	if f := b.consumer(); f != nil {
		return f.Fetch(ctx, n, wait)
	}
	rctx, cancel := context.WithTimeout(ctx, directReadTimeout)
	msgs, pending, err := b.dr.ReadPartition(rctx, b.id, b.next, n)
	cancel()
	if err != nil && ctx.Err() == nil {
		b.p.m.directErrors.Inc()
		if b.readErrs++; b.readErrs&(b.readErrs-1) == 0 { // the 1st, 2nd, 4th, 8th… (a read every 100 ms)
			b.p.log.Warn("reading a partition directly while its consumer is created", "partition", b.id,
				"from_seq", b.next, "failures", b.readErrs, "err", err)
		}
	}
	if err != nil || len(msgs) == 0 {
		t := time.NewTimer(max(wait, minDirectPoll))
		defer t.Stop()
		select {
		case <-b.ready:
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return nil, nil
	}
	b.next = msgs[len(msgs)-1].Seq + 1
	b.read += len(msgs)
	b.pending.Store(pending)
	b.p.m.directRead.Add(float64(len(msgs)))
	return msgs, nil
}

// minDirectPoll spaces direct reads that find nothing.
const minDirectPoll = 100 * time.Millisecond

// Pending is the consumer's backlog once it exists; before, what the
// last direct read left (nothing awaits an acknowledgement).
func (b *bridge) Pending(ctx context.Context) (pending, ackPending uint64, err error) {
	if pd, ok := b.consumer().(pender); ok {
		return pd.Pending(ctx)
	}
	return b.pending.Load(), 0, nil
}

// create starts the consumer's creation, bound to ctx (the fetch
// goroutine's) and to Close.
func (b *bridge) create(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	ctx, b.cancel = context.WithCancel(ctx)
	b.began = time.Now()
	go func() {
		f := b.p.createRetrying(ctx, b.id, "creating a partition's consumer while reading it directly",
			func(ctx context.Context) (Fetcher, error) {
				return b.p.deps.Consumers.PartitionConsumer(ctx, b.id, b.from)
			})
		if f == nil {
			return // closed, or the worker ended
		}
		b.mu.Lock()
		closed := b.closed
		if !closed {
			b.f = f
			close(b.ready)
		}
		b.mu.Unlock()
		if !closed {
			b.p.log.Info("partition consumer ready; it was read directly meanwhile", "partition", b.id,
				"from_seq", b.from, "after", time.Since(b.began).Round(time.Millisecond))
		}
	}()
}

// Close stops a creation in progress: the part was dropped (disowned,
// reopened). A consumer created already stays, like any consumer of a
// partition this node no longer reads; its next open deletes it.
func (b *bridge) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.cancel != nil {
		b.cancel()
	}
}

// createRetrying runs create with an open's attempt timeouts until it
// succeeds, ctx ends or the processor stops (nil then), logging each
// failure with what.
func (p *Processor) createRetrying(ctx context.Context, id int, what string, create func(context.Context) (Fetcher, error)) Fetcher {
	for attempt := 0; ctx.Err() == nil && !p.stopped(); attempt++ {
		actx, cancel := context.WithTimeout(ctx, openAttemptTimeout(attempt))
		f, err := create(actx)
		cancel()
		if err == nil {
			return f
		}
		if ctx.Err() != nil {
			return nil
		}
		p.log.Warn(what+"; retrying", "partition", id, "attempt", attempt+1, "err", err)
		p.sleep(ctx, openRetryPause)
	}
	return nil
}

// closeFetcher ends what a dropped part's fetcher still runs.
func closeFetcher(f Fetcher) {
	if c, ok := f.(interface{ Close() }); ok {
		c.Close()
	}
}
