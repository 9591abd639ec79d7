package process

import (
	"context"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/clickpipe/clickpipe/state"
)

// DupsPublisher makes the duplicate lists of applied events messages
// readable by a lake writer on another node (cluster.partition_ownership:
// the node writing the events table has no state for the partitions it
// does not own).
type DupsPublisher interface {
	// LastDups is the Through of partition p's last published record (0:
	// none).
	LastDups(ctx context.Context, p int) (uint64, error)
	// PublishDups stores rec durably; publishing the same record twice
	// is harmless (the content is a function of the stream).
	PublishDups(ctx context.Context, rec state.DupsRecord) error
}

// maxDupsPerRecord bounds a record's size (a catch-up after a long
// outage is split).
const maxDupsPerRecord = 2048

// dupsEvery spaces a consumed partition's records: each is a replicated
// write to stream DUPS, kept as long as EVENTS. Published after every
// commit (the relay runs after each one), their count followed the
// commit rate: two DUPS messages for three EVENTS messages at a light
// load (BENCHMARKS.md, "Duplicate lists"). The lake writer flushes every
// archive.flush_interval (1 min), so waiting up to dupsEvery plus a relay
// tick for a record costs it nothing. A release publishes at once.
const dupsEvery = 2 * time.Second

// publishDups publishes partition part's duplicate lists from where the
// last record (of any owner) or this node's checkpoint ends, whichever is
// lower, to the checkpoint, so the published records cover every applied
// sequence without a gap whoever applied it. Unless force (a release, a
// shutdown) it does so at most every dupsEvery.
func (p *Processor) publishDups(ctx context.Context, part int, force bool) error {
	if p.deps.Dups == nil || !force && !p.dupsDue(part) {
		return nil
	}
	done, ok := p.dupsFrom(part)
	for ctx.Err() == nil {
		var rec state.DupsRecord
		err := p.deps.Store.View(func(txn *badger.Txn) error {
			cp, err := state.ReadCheckpoint(txn, part)
			if err != nil {
				return err
			}
			if !ok {
				last, err := p.deps.Dups.LastDups(ctx, part)
				if err != nil {
					return err
				}
				done, ok = min(last, cp.LastSeq), true
			}
			rec, err = readDups(txn, part, done, cp.LastSeq)
			return err
		})
		if err != nil {
			return fmt.Errorf("duplicate lists of partition %d: %w", part, err)
		}
		if rec.Through == done {
			p.setDupsFrom(part, done, true)
			return nil
		}
		if err := p.deps.Dups.PublishDups(ctx, rec); err != nil {
			return fmt.Errorf("publishing duplicate lists of partition %d: %w", part, err)
		}
		done = rec.Through
		p.setDupsFrom(part, done, false)
	}
	return ctx.Err()
}

// readDups collects the duplicate lists of partition part in (after,
// through], up to maxDupsPerRecord of them (the record then ends at the
// last one).
func readDups(txn *badger.Txn, part int, after, through uint64) (state.DupsRecord, error) {
	rec := state.DupsRecord{Partition: part, After: after, Through: through, Lines: map[uint64][]uint32{}}
	if through <= after {
		rec.Through = after
		return rec, nil
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: state.DupsPrefix(part), PrefetchValues: true})
	defer it.Close()
	for it.Seek(state.DupsKey(part, after+1)); it.Valid(); it.Next() {
		seq, ok := state.DupsSeq(it.Item().Key())
		if !ok || seq > through {
			break
		}
		if len(rec.Lines) == maxDupsPerRecord {
			rec.Through = seq - 1
			break
		}
		err := it.Item().Value(func(v []byte) error {
			lines, err := state.DecodeDups(v)
			rec.Lines[seq] = lines
			return err
		})
		if err != nil {
			return rec, err
		}
	}
	return rec, nil
}

// dupsMark is how far a consumed partition's duplicate lists are
// published, and when they last reached its checkpoint (zero: not yet).
type dupsMark struct {
	through uint64
	at      time.Time
}

func (p *Processor) dupsFrom(part int) (uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.dupsDone[part]
	return m.through, ok
}

// dupsDue is whether partition part's records last reached its checkpoint
// dupsEvery ago or more.
func (p *Processor) dupsDue(part int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.dupsDone[part]
	return !ok || m.at.IsZero() || time.Since(m.at) >= dupsEvery
}

// setDupsFrom records that partition part's records are published through
// done (and, with atCheckpoint, that done is its checkpoint now), for a
// partition this node consumes only: a released one starts over from the
// last record when it is owned again.
func (p *Processor) setDupsFrom(part int, done uint64, atCheckpoint bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, owned := p.owned[part]; owned || !p.deps.Dynamic {
		m := p.dupsDone[part]
		m.through = done
		if atCheckpoint {
			m.at = time.Now()
		}
		p.dupsDone[part] = m
	}
}
