package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	o, err := m.prepare(ctx, p, epoch)
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

// prepare restores p when the store is ahead and returns what p's
// snapshots start from.
func (m *Manager) prepare(ctx context.Context, p int, epoch uint64) (*owned, error) {
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
	}
	for i := len(refs) - 1; i >= 0 && (pending || refs[i].LastSeq > cp.LastSeq); i-- {
		restored, err := m.restore(ctx, p, refs[i], o)
		if err != nil || restored {
			return o, err
		}
	}
	if pending {
		m.log.Warn("no usable snapshot for an interrupted restore; dropping the partition for a full replay", "partition", p)
		m.m.restores.WithLabelValues("dropped").Inc()
		return o, m.state.Drop(p)
	}
	m.m.restores.WithLabelValues("kept").Inc()
	return o, nil
}

// restore imports the snapshot ref into p; restored is false when the
// snapshot was refused as corrupt (p untouched).
func (m *Manager) restore(ctx context.Context, p int, ref Ref, o *owned) (restored bool, err error) {
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
	m.m.restores.WithLabelValues("restored").Inc()
	m.m.duration.WithLabelValues("restore").Observe(time.Since(start).Seconds())
	m.log.Info("partition restored from snapshot", "partition", p, "key", ref.Key, "last_seq", info.Checkpoint.LastSeq,
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
