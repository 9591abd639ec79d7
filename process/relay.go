package process

import (
	"context"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/state"
)

// The outbox: closed sessions are written in the same transaction as the
// state change that closed them; the relay publishes each to the sessions
// stream with Nats-Msg-Id "<sessionId>/<version>" and then deletes it. A
// crash between publish and delete re-publishes, which the stream's
// duplicate window (and the lake's highest-version rule) absorbs.

const relayEvery = time.Second

func (p *Processor) signalRelay() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Processor) relay(ctx context.Context) error {
	t := time.NewTicker(relayEvery)
	defer t.Stop()
	for {
		stopping := p.stopped()
		if err := p.drainOutbox(ctx, stopping); err != nil && ctx.Err() == nil {
			p.log.Warn("relaying sessions", "err", err)
		}
		if stopping || ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		case <-t.C:
		}
	}
}

type outboxItem struct {
	key, body []byte
	msgID     string
}

// drainOutbox relays every partition this node consumes (drainPart); final
// at shutdown.
func (p *Processor) drainOutbox(ctx context.Context, final bool) error {
	owned := p.ownedParts()
	for part := range p.deps.Partitions {
		o, ok := owned[part]
		if !ok && p.deps.Dynamic {
			continue // another node's: its owner relays it
		}
		if err := p.drainPart(ctx, part, o, final); err != nil {
			return err
		}
	}
	return nil
}

// drainPart relays partition part's outboxes (sessions, controls, forget
// reports), each after o.Check when it holds anything, and publishes its
// duplicate lists (when due, or at once when final: a release, a
// shutdown).
func (p *Processor) drainPart(ctx context.Context, part int, o Ownership, final bool) error {
	fence := func() error { return o.check(ctx) }
	if err := p.drainPartition(ctx, part, fence); err != nil {
		return err
	}
	if err := p.drainControls(ctx, part, fence); err != nil {
		return err
	}
	if err := p.reportForgets(ctx, part, fence); err != nil {
		return err
	}
	return p.publishDups(ctx, part, final)
}

// drainControls publishes partition part's control messages (identity
// merge steps) to their target partitions, then deletes them; the
// Nats-Msg-Id makes a re-publication after a crash a no-op, and the merge
// id makes a late duplicate one too.
func (p *Processor) drainControls(ctx context.Context, part int, fence func() error) error {
	if p.deps.Controls == nil {
		return nil
	}
	return drainOutbox(p, state.ControlPrefix(part), "control outbox", state.DecodeControl, fence, func(c state.Control) error {
		hdr := map[string]string{"Nats-Msg-Id": c.MsgID, event.HeaderControl: c.Kind}
		_, err := p.deps.Controls.Publish(ctx, c.Target, c.Body, hdr)
		return err
	})
}

// drainOutbox hands up to 256 records under prefix to handle, in key
// order, after fence, then deletes them: a crash in between hands them
// again, so handle must be idempotent.
func drainOutbox[T any](p *Processor, prefix []byte, what string, decode func([]byte) (T, error), fence func() error, handle func(T) error) error {
	var keys [][]byte
	var recs []T
	err := p.deps.Store.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(recs) < 256; it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			r, err := decode(v)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			keys, recs = append(keys, it.Item().KeyCopy(nil)), append(recs, r)
		}
		return nil
	})
	if err != nil || len(recs) == 0 {
		return err
	}
	if err := fence(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, r := range recs {
		if err := handle(r); err != nil {
			return err
		}
	}
	return p.deps.Store.Update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

func (p *Processor) drainPartition(ctx context.Context, part int, fence func() error) error {
	for ctx.Err() == nil {
		var items []outboxItem
		err := p.deps.Store.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: state.OutboxPrefix(part), PrefetchValues: true})
			defer it.Close()
			for it.Rewind(); it.Valid() && len(items) < 256; it.Next() {
				body, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				k := it.Item().KeyCopy(nil)
				id, ok := state.OutboxMsgID(k)
				if !ok {
					return fmt.Errorf("outbox key %q: malformed", k)
				}
				items = append(items, outboxItem{key: k, body: body, msgID: id})
			}
			return nil
		})
		if err != nil || len(items) == 0 {
			return err
		}
		if err := fence(); err != nil {
			return fmt.Errorf("session outbox: %w", err)
		}
		for _, it := range items {
			if _, err := p.deps.Sessions.PublishSession(ctx, it.body, it.msgID); err != nil {
				return err
			}
		}
		if err := p.deps.Store.Update(func(txn *badger.Txn) error {
			for _, it := range items {
				if err := txn.Delete(it.key); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		p.m.published.Add(float64(len(items)))
	}
	return ctx.Err()
}
