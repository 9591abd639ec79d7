package process

import (
	"context"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/clickpipe/clickpipe/state"
)

// ConsumerPreparer is implemented by Consumers that can create a
// partition's consumer ahead of its open (Processor.Prepare).
type ConsumerPreparer interface {
	// PrepareConsumer creates a consumer of partition at startSeq beside
	// the partition's current ones, which it leaves alone (this node may
	// still read one of them). The next PartitionConsumer of the
	// partition deletes it with the others.
	PrepareConsumer(ctx context.Context, partition int, startSeq uint64) (Fetcher, error)
	// DiscardConsumer deletes a prepared consumer that will not be read.
	DiscardConsumer(ctx context.Context, f Fetcher) error
}

// preparedConsumer is a consumer Prepare created at from (the local
// checkpoint + 1 then); no one has fetched from it.
type preparedConsumer struct {
	from uint64
	f    Fetcher
}

// Prepare creates partition id's consumer ahead of a takeover this node
// may be about to make (cluster: the partition's lease holder went silent
// and this node is next in placement; it runs after the snapshot restore
// ahead of the takeover). Right after a node's crash, creating a consumer
// was most of the time between the lease and the partition consumed: a
// new replicated consumer waits for its Raft group and often for the meta
// leader's election (2 to 5 s, BENCHMARKS.md "Crash handovers over
// repeated kills"). The consumer starts at the local checkpoint + 1; an
// open of id whose checkpoint is still that one takes it instead of
// creating one (a checkpoint that moved meanwhile, a snapshot restored at
// the takeover, leaves it to be deleted by that open). No one fetches
// from a prepared consumer before an open takes it, so it is as good as
// one created then, however old.
//
// Prepare does nothing for a partition this node consumes, or without
// Deps.Dynamic or a ConsumerPreparer; it retries a failing creation until
// ctx ends. A prepared consumer never taken stays until the partition's
// next open or Prepare on this node (at most one per partition).
func (p *Processor) Prepare(ctx context.Context, id int) {
	cp, ok := p.deps.Consumers.(ConsumerPreparer)
	if !ok || !p.deps.Dynamic || id < 0 || id >= p.deps.Partitions {
		return
	}
	var from uint64
	err := p.deps.Store.View(func(txn *badger.Txn) error {
		ps, err := state.ReadCheckpoint(txn, id)
		from = ps.LastSeq + 1
		return err
	})
	if err != nil {
		p.log.Warn("preparing a partition's consumer", "partition", id, "err", err)
		return
	}
	p.mu.Lock()
	_, owned := p.owned[id]
	old, had := p.prepared[id]
	if !owned && had && old.from != from {
		delete(p.prepared, id)
	}
	p.mu.Unlock()
	if owned || had && old.from == from {
		return // consuming it, or prepared already
	}
	if had {
		p.discard(ctx, id, old)
	}
	var start time.Time
	f := p.createRetrying(ctx, id, "preparing a partition's consumer", func(actx context.Context) (Fetcher, error) {
		start = time.Now()
		f, err := cp.PrepareConsumer(actx, id, from)
		if err != nil {
			p.m.prepared.WithLabelValues("error").Inc()
		}
		return f, err
	})
	if f == nil {
		return
	}
	p.mu.Lock()
	prev, replaced := p.prepared[id]
	p.prepared[id] = preparedConsumer{from: from, f: f}
	p.mu.Unlock()
	if replaced {
		p.discard(ctx, id, prev)
	}
	p.m.prepared.WithLabelValues("created").Inc()
	p.log.Info("partition consumer prepared ahead of a takeover", "partition", id, "from_seq", from,
		"duration", time.Since(start).Round(time.Millisecond))
}

// takePrepared returns the consumer Prepare made for partition id if it
// starts at from (nil otherwise); either way the partition has none
// prepared afterwards (the open's PartitionConsumer deletes a stale one
// with the other incarnations).
func (p *Processor) takePrepared(id int, from uint64) Fetcher {
	p.mu.Lock()
	pc, ok := p.prepared[id]
	delete(p.prepared, id)
	p.mu.Unlock()
	switch {
	case !ok:
		return nil
	case pc.from != from:
		p.m.prepared.WithLabelValues("stale").Inc()
		return nil
	}
	p.m.prepared.WithLabelValues("used").Inc()
	return pc.f
}

// discard deletes a prepared consumer that will not be read (logged
// only: the partition's next open deletes it with the other incarnations).
func (p *Processor) discard(ctx context.Context, id int, pc preparedConsumer) {
	cp, ok := p.deps.Consumers.(ConsumerPreparer)
	if !ok {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, openAttemptTimeout(0))
	defer cancel()
	if err := cp.DiscardConsumer(dctx, pc.f); err != nil {
		p.log.Warn("deleting a prepared partition consumer", "partition", id, "err", err)
	}
}
