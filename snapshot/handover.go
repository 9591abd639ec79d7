package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/clickpipe/clickpipe/state"
)

// Acquired prepares partition p, just acquired at epoch, for the
// sessionizer: when the store holds a snapshot whose checkpoint is ahead
// of p's local checkpoint, the newest such snapshot replaces p's local
// range, and the sessionizer then replays from its checkpoint + 1. A
// snapshot that fails verification is skipped for the next older one. A
// local range left incomplete by an interrupted restore is replaced by
// the newest usable snapshot or, with none, dropped (the sessionizer
// replays p from the stream's start).
//
// Call it before the sessionizer starts p. On error, do not start p: its
// range may be incomplete (state.ErrRestorePending); call Acquired again.
func (m *Manager) Acquired(ctx context.Context, p int, epoch uint64) error {
	unlock := m.lockPartition(p) // waits for a Prepare of p in progress
	defer unlock()
	o, err := m.prepare(ctx, p, epoch, false)
	if err != nil {
		m.m.restores.WithLabelValues("error").Inc()
		return fmt.Errorf("acquiring partition %d: %w", p, err)
	}
	m.mu.Lock()
	m.owned[p] = o
	m.m.owned.Set(float64(len(m.owned)))
	m.mu.Unlock()
	return nil
}

// Prepare restores partition p ahead of a takeover this node may be about
// to make (p's holder went silent and this node is next in placement):
// the newest stored snapshot ahead of p's local checkpoint replaces p's
// local range now, so that Acquired, if the takeover comes, finds the
// range current and restores nothing, and the partition is ownerless for
// the lease's wait only instead of that wait and a restore. Only for a
// partition this node does not own (nothing writes its range; Acquired
// waits for a Prepare in progress). If the holder was alive after all,
// the restored range waits like any range of a partition owned elsewhere:
// Acquired compares it with the store again. Failures are logged only
// (Acquired tries again).
func (m *Manager) Prepare(ctx context.Context, p int) {
	unlock := m.lockPartition(p)
	defer unlock()
	m.mu.Lock()
	_, owned := m.owned[p]
	m.mu.Unlock()
	if owned {
		return
	}
	if _, err := m.prepare(ctx, p, 0, true); err != nil && ctx.Err() == nil {
		m.log.Warn("restoring a partition ahead of a takeover", "partition", p, "err", err)
	}
}

// lockPartition serialises Prepare and Acquired of partition p.
func (m *Manager) lockPartition(p int) (unlock func()) {
	m.mu.Lock()
	l := m.restoring[p]
	if l == nil {
		l = &sync.Mutex{}
		m.restoring[p] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// prepare restores p when the store is ahead and returns what p's
// snapshots start from; ahead is a Prepare's (the restores metric counts
// acquisitions, and a Prepare's restore apart).
func (m *Manager) prepare(ctx context.Context, p int, epoch uint64, ahead bool) (*owned, error) {
	o := &owned{epoch: epoch}
	cp, err := m.state.Position(p)
	pending := errors.Is(err, state.ErrRestorePending)
	if err != nil && !pending {
		return nil, err
	}
	refs, err := m.store.List(ctx, p)
	if err != nil {
		return nil, err
	}
	if len(refs) > 0 {
		o.last = refs[len(refs)-1].LastSeq
		if !pending && m.replayInstead(p, cp, o.last, ahead) {
			return o, nil
		}
	}
	for i := len(refs) - 1; i >= 0 && (pending || refs[i].LastSeq > cp.LastSeq); i-- {
		restored, err := m.restore(ctx, p, refs[i], o, ahead)
		if err != nil || restored {
			return o, err
		}
	}
	if pending {
		m.log.Warn("no usable snapshot for an interrupted restore; dropping the partition for a full replay", "partition", p)
		m.m.restores.WithLabelValues("dropped").Inc()
		return o, m.state.Drop(p)
	}
	if !ahead {
		m.m.restores.WithLabelValues("kept").Inc()
	}
	return o, nil
}

// replayInstead says whether the local state of p at cp is close enough
// to the newest snapshot, at newest, to be replayed forward from the stream
// rather than replaced (snapshot.replay_within): a restore deletes and
// loads the whole range (seconds for tens of thousands of keys on a busy
// node), a short replay applies only what changed. Any state at checkpoint
// X is a valid start for a replay from X + 1 while the stream holds it,
// hence the age bound.
func (m *Manager) replayInstead(p int, cp state.Checkpoint, newest uint64, ahead bool) bool {
	if newest <= cp.LastSeq || cp.LastSeq == 0 || newest-cp.LastSeq > m.cfg.ReplayWithin ||
		time.Since(time.UnixMilli(cp.CommittedAt)) > m.cfg.StreamRetention/2 {
		return false
	}
	if !ahead {
		m.m.restores.WithLabelValues("replay").Inc()
		m.log.Info("local state close to the newest snapshot; replaying the gap instead of restoring", "partition", p,
			"local_seq", cp.LastSeq, "snapshot_seq", newest)
	}
	return true
}

// restore imports the snapshot ref into p; restored is false when the
// snapshot was refused as corrupt (p untouched).
func (m *Manager) restore(ctx context.Context, p int, ref Ref, o *owned, ahead bool) (restored bool, err error) {
	start := time.Now()
	data, err := m.store.Get(ctx, ref)
	if err != nil {
		return false, err
	}
	info, err := m.state.Import(p, bytes.NewReader(data), int64(len(data)))
	if errors.Is(err, state.ErrBadSnapshot) {
		m.log.Error("refused snapshot", "partition", p, "key", ref.Key, "err", err)
		m.m.restores.WithLabelValues("corrupt").Inc()
		return false, nil
	}
	if err != nil {
		return false, err
	}
	o.size = len(data)
	result, msg := "restored", "partition restored from snapshot"
	if ahead {
		result, msg = "ahead", "partition restored from snapshot ahead of a takeover"
	}
	m.m.restores.WithLabelValues(result).Inc()
	m.m.duration.WithLabelValues("restore").Observe(time.Since(start).Seconds())
	m.log.Info(msg, "partition", p, "key", ref.Key, "last_seq", info.Checkpoint.LastSeq,
		"keys", info.Keys, "bytes", len(data), "duration", time.Since(start))
	return true, nil
}

// Released stops snapshotting partition p, after the sessionizer stopped
// it; when graceful it first writes a final snapshot at p's last
// checkpoint, so the next owner replays nothing this node applied. A
// failed final snapshot is logged: the next owner restores an older one
// and replays more.
func (m *Manager) Released(ctx context.Context, p int, graceful bool) {
	m.mu.Lock()
	o := m.owned[p]
	delete(m.owned, p)
	m.m.owned.Set(float64(len(m.owned)))
	m.mu.Unlock()
	if o == nil || !graceful {
		return
	}
	o.mu.Lock() // waits for a periodic snapshot of p in progress
	defer o.mu.Unlock()
	if _, err := m.write(ctx, p, o); err != nil {
		m.log.Error("final snapshot", "partition", p, "err", err)
	}
}
