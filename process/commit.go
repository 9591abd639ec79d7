package process

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/clickpipe/clickpipe/event"
)

// idleCommitEvery throttles watermark-only commits of an idle partition.
const idleCommitEvery = time.Second

// commit applies msgs (or, when idle, only advances the watermark) in one
// durable transaction together with the checkpoint, then acks. Messages at
// or below the checkpoint are acked without being applied. On failure the
// batch is nak'ed and the worker restarts the partition's consumer from the
// checkpoint (redelivery order alone is not trusted).
func (p *Processor) commit(ctx context.Context, pt *part, msgs []*event.Message, idle bool) error {
	if idle && time.Since(pt.lagAt) < idleCommitEvery && !pt.lagAt.IsZero() {
		return nil
	}
	var fresh []*event.Message
	for _, m := range msgs {
		if m.Seq > pt.ps.LastSeq {
			fresh = append(fresh, m)
		}
	}
	if len(msgs) > 0 && len(fresh) == 0 {
		p.m.replayed.Add(float64(len(msgs)))
		return p.ack(ctx, msgs)
	}
	if err := p.applyChunk(pt, fresh, idle); err != nil {
		for _, m := range msgs {
			_ = m.Nak(0)
		}
		return err
	}
	p.m.replayed.Add(float64(len(msgs) - len(fresh)))
	return p.ack(ctx, msgs)
}

// applyChunk applies msgs in as few transactions as the transaction
// size allows, each committed with the checkpoint of its last message.
func (p *Processor) applyChunk(pt *part, msgs []*event.Message, idle bool) error {
	for first := true; first || len(msgs) > 0; first = false {
		n, err := p.applySome(pt, msgs, idle && first)
		if err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// applySome applies messages of msgs until the transaction holds
// max_txn_bytes, commits, and reports how many it applied.
func (p *Processor) applySome(pt *part, msgs []*event.Message, idle bool) (int, error) {
	start := time.Now()
	pt.batch++
	var a *applier
	n := 0
	err := p.deps.Store.Update(func(txn *badger.Txn) error {
		a = newApplier(&p.cfg, pt, txn, time.Now())
		if idle && !a.idle() && len(msgs) == 0 {
			return errSkip
		}
		for _, m := range msgs {
			if err := a.message(m); err != nil {
				return fmt.Errorf("message %d: %w", m.Seq, err)
			}
			n++
			if a.bytes >= p.cfg.MaxTxnBytes {
				break
			}
		}
		if err := a.closeIndexed(); err != nil {
			return err
		}
		return a.flush()
	})
	switch {
	case errors.Is(err, errSkip):
		pt.lagAt = time.Now()
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("partition %d: committing: %w", pt.id, err)
	}
	pt.ps = a.ps
	p.afterCommit(pt, a)
	if idle {
		pt.lagAt = time.Now()
	}
	p.observe(pt, a, start)
	if a.outboxed > 0 {
		p.signalRelay()
	}
	return n, nil
}

var errSkip = errors.New("nothing to commit")

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

func (p *Processor) ack(ctx context.Context, msgs []*event.Message) error {
	for _, m := range msgs {
		if err := m.Ack(ctx); err != nil {
			// The effect is committed; a redelivery is skipped by the
			// checkpoint, so a lost ack costs a re-read only.
			p.log.Warn("ack", "seq", m.Seq, "err", err)
		}
	}
	return nil
}

func (p *Processor) observe(pt *part, a *applier, start time.Time) {
	now := time.Now()
	l := partLabel(pt.id)
	s := &a.stats
	p.m.events.WithLabelValues("applied").Add(float64(s.applied))
	p.m.events.WithLabelValues("duplicate").Add(float64(s.duplicates))
	p.m.events.WithLabelValues("late").Add(float64(s.late))
	p.m.events.WithLabelValues("reopened").Add(float64(s.reopened))
	p.m.events.WithLabelValues("corrupt").Add(float64(s.corrupt))
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

// updateLag refreshes the lag gauges at most every few seconds.
func (p *Processor) updateLag(ctx context.Context, pt *part, msgs []*event.Message) {
	l := partLabel(pt.id)
	if n := len(msgs); n > 0 {
		p.m.lagSeconds.WithLabelValues(l).Set(time.Since(msgs[0].Published).Seconds())
	} else {
		p.m.lagSeconds.WithLabelValues(l).Set(0)
	}
	pd, ok := pt.f.(pender)
	if !ok || time.Since(pt.lagPolled) < 5*time.Second {
		return
	}
	pt.lagPolled = time.Now()
	if pending, _, err := pd.Pending(ctx); err == nil {
		p.m.lagMessages.WithLabelValues(l).Set(float64(pending))
	}
}
