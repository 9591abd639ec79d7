package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/state"
)

// State is the serving state a Manager snapshots and restores;
// *state.Store satisfies it.
type State interface {
	Export(p int, epoch uint64, w io.Writer) (state.SnapshotInfo, error)
	Import(p int, r io.ReaderAt, size int64) (state.SnapshotInfo, error)
	// Drop empties an interrupted restore when no snapshot can replace it.
	Drop(p int) error
	// Position is p's checkpoint, or state.ErrRestorePending.
	Position(p int) (state.Checkpoint, error)
}

var _ State = (*state.Store)(nil)

// Manager snapshots the partitions this node owns and restores the ones
// it acquires. Acquired and Released are the ownership hooks; Run writes
// the periodic snapshots.
type Manager struct {
	cfg   Config
	state State
	store *Store
	log   *slog.Logger
	m     *metrics

	mu    sync.Mutex
	owned map[int]*owned
	// restoring orders a partition's Prepare and Acquired (p → lock).
	restoring map[int]*sync.Mutex

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	running  atomic.Bool
}

// owned is one partition this node owns. Its mutex orders the
// partition's snapshots and its release.
type owned struct {
	mu    sync.Mutex
	epoch uint64
	// last is the checkpoint of the newest snapshot known to be stored.
	last uint64
	// size is the last snapshot's size (the next one's buffer).
	size int
}

// New validates cfg; it starts nothing.
func New(cfg Config, st State, objs Objects, log *slog.Logger, reg prometheus.Registerer) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st == nil || objs == nil {
		return nil, errors.New("snapshot: state and object store are required")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, state: st, store: NewStore(objs), log: log, m: m, owned: map[int]*owned{},
		restoring: map[int]*sync.Mutex{}, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Store is the snapshot store the manager writes.
func (m *Manager) Store() *Store { return m.store }

// Run snapshots every owned partition whose checkpoint moved, every
// cfg.Interval, until Shutdown (it returns nil) or until hard is
// cancelled (an upload in progress is abandoned; the previous snapshot
// stays the latest).
func (m *Manager) Run(hard context.Context) error {
	m.running.Store(true)
	defer close(m.done)
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-hard.Done():
			return nil
		case <-m.stop:
			return nil
		case <-t.C:
			m.SnapshotOwned(hard)
		}
	}
}

// Shutdown stops the periodic snapshots and waits for Run to return (if
// Run was started). It does not snapshot: the ownership layer calls
// Released(graceful) for each partition it hands over.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.stopOnce.Do(func() { close(m.stop) })
	if !m.running.Load() {
		return nil
	}
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping snapshots: %w", ctx.Err())
	}
}

// SnapshotOwned snapshots, one after the other, the owned partitions
// whose checkpoint moved since their last snapshot. Failures are logged
// and counted; the next pass tries again.
func (m *Manager) SnapshotOwned(ctx context.Context) {
	m.mu.Lock()
	parts := slices.Sorted(maps.Keys(m.owned))
	m.mu.Unlock()
	for _, p := range parts {
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		o := m.owned[p]
		m.mu.Unlock()
		if o == nil {
			continue // released meanwhile
		}
		o.mu.Lock()
		if _, err := m.write(ctx, p, o); err != nil {
			m.log.Warn("snapshot", "partition", p, "err", err)
		}
		o.mu.Unlock()
	}
}

// write snapshots p unless its checkpoint is that of the newest stored
// snapshot; it says whether it wrote one. The caller holds o.mu.
func (m *Manager) write(ctx context.Context, p int, o *owned) (bool, error) {
	cp, err := m.state.Position(p)
	if err != nil {
		return false, err
	}
	if cp.LastSeq == 0 || cp.LastSeq == o.last {
		return false, nil
	}
	start := time.Now()
	buf := bytes.NewBuffer(make([]byte, 0, o.size+o.size/8))
	info, err := m.state.Export(p, o.epoch, buf)
	if err == nil {
		_, err = m.store.Put(ctx, p, info.Checkpoint.LastSeq, buf.Bytes())
	}
	if err != nil {
		m.m.writes.WithLabelValues("error").Inc()
		return false, err
	}
	o.last, o.size = info.Checkpoint.LastSeq, buf.Len()
	m.m.writes.WithLabelValues("ok").Inc()
	m.m.size.Observe(float64(buf.Len()))
	m.m.duration.WithLabelValues("write").Observe(time.Since(start).Seconds())
	m.log.Debug("snapshot written", "partition", p, "last_seq", o.last, "bytes", o.size, "keys", info.Keys,
		"duration", time.Since(start))
	if _, err := m.store.Prune(ctx, p, m.cfg.Keep); err != nil {
		m.log.Warn("pruning snapshots", "partition", p, "err", err)
	}
	return true, nil
}
