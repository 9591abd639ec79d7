package process

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/state"
)

// idleCommitEvery throttles watermark-only commits of an idle partition.
const idleCommitEvery = time.Second

// work is one partition's share of a round.
type work struct {
	slot      *slot
	pt        *part
	all       []*event.Message // as fetched
	fresh     []*event.Message // above the checkpoint, not yet applied
	idle      bool
	fenced    bool // refused: the partition is no longer owned
	fetchedAt time.Time
}

// handle commits one round of fetched batches (and idle partitions'
// watermarks) and returns the slots of the partitions that failed.
func (p *Processor) handle(ctx context.Context, round []fetched) (failed []*slot) {
	var ws []*work
	var advanced []*part // committed, or nothing to do
	defer func() { p.noteProgress(advanced) }()
	for _, r := range round {
		pt := r.s.pt
		if r.err != nil {
			p.log.Error("fetching", "partition", pt.id, "err", r.err)
			failed = append(failed, r.s)
			continue
		}
		if lost := pt.lostDelivery(r.msgs); lost > 0 {
			p.m.lostDeliveries.Add(float64(lost))
			p.log.Warn("deliveries never arrived; reopening the partition from its checkpoint",
				"partition", pt.id, "lost", lost, "checkpoint", pt.ps.LastSeq)
			failed = append(failed, r.s)
			continue
		}
		p.updateLag(pt, r)
		w := &work{slot: r.s, pt: pt, all: r.msgs, fetchedAt: r.at}
		if len(r.msgs) == 0 {
			pt.fresh.AppliedThrough, pt.fresh.OldestPending = r.at, time.Time{}
			pt.fresh.Checkpoint = pt.ps.LastSeq
			p.deps.Live.SetFreshness(pt.id, pt.fresh)
			if time.Since(pt.lastData) < p.cfg.IdleTimeout ||
				!pt.lagAt.IsZero() && time.Since(pt.lagAt) < idleCommitEvery {
				advanced = append(advanced, pt)
				continue
			}
			w.idle = true
		} else {
			pt.lastData = time.Now()
			if pt.fresh.OldestPending.IsZero() {
				pt.fresh.OldestPending = r.msgs[0].Published
				p.deps.Live.SetFreshness(pt.id, pt.fresh)
			}
			for _, m := range r.msgs {
				if m.Seq > pt.ps.LastSeq {
					w.fresh = append(w.fresh, m)
				}
			}
			p.m.replayed.Add(float64(len(r.msgs) - len(w.fresh)))
		}
		ws = append(ws, w)
	}
	if err := p.commitRound(ws); err != nil {
		p.log.Error("applying batch", "partitions", len(ws), "err", err)
		for _, w := range ws {
			for _, m := range w.all {
				_ = m.Nak(0)
			}
			failed = append(failed, w.slot)
		}
		return failed
	}
	// One budget for the round's acks: a round trip each, and seconds
	// each while JetStream elects a consumer's leader (7.8 s of a
	// takeover's in TestCrashHandovers went to a worker acknowledging
	// another partition's batch); past it the rest fail at once.
	actx, cancel := context.WithTimeout(ctx, ackBudget)
	defer cancel()
	for _, w := range ws {
		if w.fenced {
			p.refuse(w)
			failed = append(failed, w.slot)
			continue
		}
		p.ack(actx, w.pt.id, w.all)
		advanced = append(advanced, w.pt)
		if len(w.all) == 0 {
			continue
		}
		// A short batch took everything there was when the fetch returned.
		if last := w.all[len(w.all)-1]; len(w.all) < p.cfg.FetchBatch {
			w.pt.fresh.AppliedThrough, w.pt.fresh.OldestPending = w.fetchedAt, time.Time{}
		} else {
			w.pt.fresh.AppliedThrough, w.pt.fresh.OldestPending = last.Published, last.Published
		}
		w.pt.fresh.Watermark = fromMs(w.pt.ps.Watermark)
		w.pt.fresh.Checkpoint = w.pt.ps.LastSeq
		p.deps.Live.SetFreshness(w.pt.id, w.pt.fresh)
	}
	return failed
}

// commitRound applies the round's work in as few transactions as
// max_txn_bytes allows: each holds whole messages of one or more
// partitions with their checkpoints.
func (p *Processor) commitRound(ws []*work) error {
	for len(ws) > 0 {
		n, err := p.commitSome(ws)
		if err != nil {
			return err
		}
		ws = ws[n:]
	}
	return nil
}

// commitSome commits one transaction and reports how many works it
// finished (a partly applied one keeps its remaining messages).
func (p *Processor) commitSome(ws []*work) (int, error) {
	start := time.Now()
	type finished struct {
		a *applier
		w *work
		n int
	}
	var fin []finished
	done := 0
	var bytes int64
	err := p.deps.Store.Update(func(txn *badger.Txn) error {
		now := time.Now()
		for _, w := range ws {
			if !w.pt.own.valid() {
				// Fenced: the lease is lost or not renewed within two
				// thirds of its ttl; another node may own the partition.
				w.fenced = true
				done++
				continue
			}
			w.pt.batch++
			a := newApplier(&p.cfg, w.pt, txn, p.deps.Store.View, now)
			a.erasures = p.deps.Erasures
			if w.idle && !a.idle() {
				w.pt.lagAt = now
				done++
				continue
			}
			n := 0
			for _, m := range w.fresh {
				if err := a.message(m); err != nil {
					return fmt.Errorf("partition %d message %d: %w", w.pt.id, m.Seq, err)
				}
				n++
				if bytes+a.bytes >= p.cfg.MaxTxnBytes {
					break
				}
			}
			if err := a.closeIndexed(); err != nil {
				return fmt.Errorf("partition %d: %w", w.pt.id, err)
			}
			if err := a.flush(); err != nil {
				return fmt.Errorf("partition %d: %w", w.pt.id, err)
			}
			if err := recordEpoch(txn, w.pt); err != nil {
				return fmt.Errorf("partition %d: %w", w.pt.id, err)
			}
			bytes += a.bytes
			fin = append(fin, finished{a, w, n})
			if n < len(w.fresh) {
				break
			}
			done++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("committing: %w", err)
	}
	for _, f := range fin {
		a, pt := f.a, f.a.pt
		pt.ps = a.ps
		if pt.own.Epoch != 0 {
			pt.epoch = pt.own.Epoch
		}
		p.afterCommit(pt, a)
		if f.w.idle {
			pt.lagAt = time.Now()
		}
		f.w.fresh = f.w.fresh[f.n:]
		p.observe(pt, a, start)
		if a.outboxed > 0 || p.deps.Dups != nil {
			p.signalRelay()
		}
	}
	return done, nil
}

// recordEpoch writes the ownership's epoch beside the checkpoint when it
// is not the one recorded (never with static ownership: epoch 0).
func recordEpoch(txn *badger.Txn, pt *part) error {
	if pt.own.Epoch == 0 || pt.own.Epoch == pt.epoch {
		return nil
	}
	return txn.Set(state.EpochKey(pt.id), state.EncodeEpoch(pt.own.Epoch))
}

// refuse gives a fenced partition's batch back to the buffer unapplied
// (the partition's memory was not touched) and counts the refusal. The
// partition is then reopened from its checkpoint like a failed one: its
// consumer would hand out newer messages before it redelivers the
// refused ones, and should the ownership be valid again (a renewal that
// succeeded late: Valid is false from two thirds of the ttl without a
// renewal until the next one succeeds), committing those would move the
// checkpoint past the refused ones, skipped as applied when redelivered
// (TestRefusedBatchIsAppliedOnceValidAgain).
func (p *Processor) refuse(w *work) {
	p.m.fenced.Inc()
	p.log.Warn("partition no longer owned; commit refused", "partition", w.pt.id, "epoch", w.pt.own.Epoch)
	for _, m := range w.all {
		_ = m.Nak(time.Second)
	}
}

// applyChunk commits msgs of one partition (benchmarks and tests).
func (p *Processor) applyChunk(pt *part, msgs []*event.Message, idle bool) error {
	return p.commitRound([]*work{{pt: pt, fresh: msgs, idle: idle}})
}

// afterCommit publishes what the commit made durable to the live view
// and keeps the partition's user memory within its share of hot_users.
func (p *Processor) afterCommit(pt *part, a *applier) {
	for _, asset := range a.titles {
		p.deps.Live.PutTitle(pt.id, asset, *pt.titles[asset])
	}
	if a.pathsDirty {
		p.deps.Live.PutPaths(pt.id, pt.paths)
	}
	budget := max(64, p.cfg.HotUsers/p.deps.Partitions)
	if len(pt.users) <= budget {
		return
	}
	slots := make([]*userSlot, 0, len(pt.users))
	for _, us := range pt.users {
		slots = append(slots, us)
	}
	slices.SortFunc(slots, func(x, y *userSlot) int { return cmpInt(int64(x.used), int64(y.used)) })
	for _, us := range slots[:len(slots)-budget*9/10] {
		if us.used != pt.batch {
			delete(pt.users, us.key)
		}
	}
}

// ack acknowledges partition id's committed messages, one round trip each
// (the server confirms). The effect is committed: an ack that fails costs
// a redelivery after the ack wait, skipped by the checkpoint, so failures
// are only logged, once per batch.
//
// The acks stay on the worker, between its rounds: acknowledged by each
// partition's fetch goroutine instead, rounds no longer waited for them
// and became smaller and more frequent (more commits and consumer state
// writes per event): 112 against 80 µs of CPU per event in the burst
// benchmark, as acks without confirmation had measured before
// (BENCHMARKS.md).
func (p *Processor) ack(ctx context.Context, id int, msgs []*event.Message) {
	failed := 0
	var first error
	for _, m := range msgs {
		if err := m.Ack(ctx); err != nil {
			failed++
			first = cmp.Or(first, err)
		}
	}
	if failed > 0 {
		p.log.Warn("acks not confirmed; the messages are redelivered after the ack wait and skipped as applied",
			"partition", id, "failed", failed, "of", len(msgs), "err", first)
	}
}

// ackBudget bounds the acks of one round (a round's acks take
// milliseconds when JetStream is well: a round trip each).
const ackBudget = time.Second

func (p *Processor) observe(pt *part, a *applier, start time.Time) {
	now := time.Now()
	l := partLabel(pt.id)
	s := &a.stats
	p.m.events.WithLabelValues("applied").Add(float64(s.applied))
	p.m.events.WithLabelValues("duplicate").Add(float64(s.duplicates))
	p.m.events.WithLabelValues("late").Add(float64(s.late))
	p.m.events.WithLabelValues("reopened").Add(float64(s.reopened))
	p.m.events.WithLabelValues("corrupt").Add(float64(s.corrupt))
	p.m.events.WithLabelValues("erased").Add(float64(s.erased))
	p.m.closed.Add(float64(s.closed))
	p.m.batchEvents.Observe(float64(s.applied + s.duplicates))
	p.m.applySeconds.Observe(now.Sub(start).Seconds())
	for _, r := range s.received {
		if !r.IsZero() {
			p.m.eventToState.Observe(now.Sub(r).Seconds())
		}
	}
	p.m.watermark.WithLabelValues(l).Set(float64(pt.ps.Watermark / 1000))
	p.m.checkpoint.WithLabelValues(l).Set(float64(pt.ps.LastSeq))
}

func partLabel(p int) string { return strconv.Itoa(p) }

// pender is implemented by fetchers that can report their backlog
// (*buffer.Consumer does).
type pender interface {
	Pending(ctx context.Context) (pending, ackPending uint64, err error)
}

// updateLag sets the lag gauges from a fetch (the backlog when its fetch
// goroutine polled it).
func (p *Processor) updateLag(pt *part, r fetched) {
	l := partLabel(pt.id)
	pt.behind = 0
	if len(r.msgs) > 0 {
		pt.behind = time.Since(r.msgs[0].Published)
	}
	p.m.lagSeconds.WithLabelValues(l).Set(pt.behind.Seconds())
	if r.polled {
		p.m.lagMessages.WithLabelValues(l).Set(float64(r.backlog))
	}
}

// lagPollEvery spaces a partition's backlog polls; lagPollTimeout bounds
// one.
const (
	lagPollEvery   = 5 * time.Second
	lagPollTimeout = 2 * time.Second
)

// lostDelivery counts the deliveries of the partition's consumer that
// never arrived before msgs (their delivery sequence jumped). A lost
// delivery (a fetch cut by a stream leader change) is redelivered only
// after AckWait, when newer messages have moved the checkpoint past it and
// it would be skipped as applied: the partition is reopened from its
// checkpoint instead, and the new consumer delivers it first.
func (pt *part) lostDelivery(msgs []*event.Message) uint64 {
	var lost uint64
	for _, m := range msgs {
		if m.Delivery == 0 {
			continue
		}
		if m.Delivery > pt.delivery+1 {
			lost += m.Delivery - pt.delivery - 1
		}
		pt.delivery = max(pt.delivery, m.Delivery)
	}
	return lost
}
