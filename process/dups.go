package process

import (
	"context"
	"fmt"

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

// publishDups publishes partition part's duplicate lists from where the
// last record (of any owner) or this node's checkpoint ends, whichever is
// lower, to the checkpoint, so the published records cover every applied
// sequence without a gap whoever applied it.
func (p *Processor) publishDups(ctx context.Context, part int) error {
	if p.deps.Dups == nil {
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
			p.setDupsFrom(part, done)
			return nil
		}
		if err := p.deps.Dups.PublishDups(ctx, rec); err != nil {
			return fmt.Errorf("publishing duplicate lists of partition %d: %w", part, err)
		}
		done = rec.Through
		p.setDupsFrom(part, done)
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

func (p *Processor) dupsFrom(part int) (uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	done, ok := p.dupsDone[part]
	return done, ok
}

func (p *Processor) setDupsFrom(part int, done uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, owned := p.owned[part]; owned || !p.deps.Dynamic {
		p.dupsDone[part] = done
	}
}
