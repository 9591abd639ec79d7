package snapshot_test

import (
	"bytes"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/snapshot"
	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// node is one clickpipe's serving state and snapshot manager over a shared
// object store.
type node struct {
	st  *state.Store
	mgr *snapshot.Manager
	reg *prometheus.Registry
}

func newNode(t *testing.T, objs snapshot.Objects, dir string) *node {
	return newNodeWith(t, objs, dir, snapshot.DefaultConfig())
}

func newNodeWith(t *testing.T, objs snapshot.Objects, dir string, cfg snapshot.Config) *node {
	t.Helper()
	n := &node{st: statetest.New(t, statetest.Options(), dir), reg: prometheus.NewRegistry()}
	var err error
	n.mgr, err = snapshot.New(cfg, n.st, objs, quiet, n.reg)
	require.NoError(t, err)
	return n
}

// releasedNode is a node that filled partition p with users at lastSeq
// ("a" users), owned it at epoch 1 and released it gracefully: objs holds
// its snapshot at lastSeq.
func releasedNode(t *testing.T, objs snapshot.Objects, p, users int, lastSeq uint64) *node {
	t.Helper()
	a := newNode(t, objs, "")
	statetest.Fill(t, a.st, p, users, lastSeq, "a")
	require.NoError(t, a.mgr.Acquired(t.Context(), p, 1))
	a.mgr.Released(t.Context(), p, true)
	return a
}

// counter reads a counter of the node's registry (0 when absent).
func (n *node) counter(t *testing.T, name, result string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func position(t *testing.T, st *state.Store, p int) uint64 {
	t.Helper()
	cp, err := st.Position(p)
	require.NoError(t, err)
	return cp.LastSeq
}

func TestGracefulHandoverMovesThePartition(t *testing.T) {
	ctx := t.Context()
	objs := dirStore(t)
	a, b := newNode(t, objs, ""), newNode(t, objs, "")
	for p := range 4 {
		statetest.Fill(t, a.st, p, 120, uint64(1000*(p+1)), "a")
		statetest.Fill(t, b.st, p, 30, 10, "b")
	}
	require.NoError(t, a.mgr.Acquired(ctx, 1, 1))
	require.Equal(t, 1.0, a.counter(t, "clickpipe_snapshot_restores_total", "kept"))
	a.mgr.Released(ctx, 1, true)
	latest, ok, err := a.mgr.Store().Latest(ctx, 1)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(2000), latest.LastSeq)

	before := []map[string]statetest.Stored{statetest.Dump(t, b.st, 0), nil, statetest.Dump(t, b.st, 2), statetest.Dump(t, b.st, 3)}
	require.NoError(t, b.mgr.Acquired(ctx, 1, 2))
	require.Equal(t, 1.0, b.counter(t, "clickpipe_snapshot_restores_total", "restored"))
	require.Empty(t, cmp.Diff(statetest.Dump(t, a.st, 1), statetest.Dump(t, b.st, 1)))
	require.Equal(t, uint64(2000), position(t, b.st, 1))
	for _, p := range []int{0, 2, 3} {
		require.Empty(t, cmp.Diff(before[p], statetest.Dump(t, b.st, p)), "partition %d untouched", p)
	}
}

func TestLocalStateAheadIsKept(t *testing.T) {
	ctx := t.Context()
	objs := dirStore(t)
	a, b := newNode(t, objs, ""), newNode(t, objs, "")
	statetest.Fill(t, a.st, 0, 50, 100, "a")
	statetest.Fill(t, b.st, 0, 50, 100, "b") // equal: not behind
	require.NoError(t, a.mgr.Acquired(ctx, 0, 1))
	a.mgr.Released(ctx, 0, true)
	local := statetest.Dump(t, b.st, 0)
	require.NoError(t, b.mgr.Acquired(ctx, 0, 2))
	require.Equal(t, 1.0, b.counter(t, "clickpipe_snapshot_restores_total", "kept"))
	require.Empty(t, cmp.Diff(local, statetest.Dump(t, b.st, 0)))
}

func TestCorruptLatestFallsBackToAnOlderSnapshot(t *testing.T) {
	ctx := t.Context()
	objs := dirStore(t)
	a, b := newNode(t, objs, ""), newNode(t, objs, "")
	statetest.Fill(t, a.st, 2, 80, 500, "a")
	require.NoError(t, a.mgr.Acquired(ctx, 2, 1))
	a.mgr.Released(ctx, 2, true)
	good := statetest.Dump(t, a.st, 2)
	ref, _, err := a.mgr.Store().Latest(ctx, 2)
	require.NoError(t, err)
	data, err := a.mgr.Store().Get(ctx, ref)
	require.NoError(t, err)
	_, err = a.mgr.Store().Put(ctx, 2, 900, data[:len(data)/2]) // a newer, truncated one
	require.NoError(t, err)

	require.NoError(t, b.mgr.Acquired(ctx, 2, 2))
	require.Equal(t, 1.0, b.counter(t, "clickpipe_snapshot_restores_total", "corrupt"))
	require.Equal(t, 1.0, b.counter(t, "clickpipe_snapshot_restores_total", "restored"))
	require.Empty(t, cmp.Diff(good, statetest.Dump(t, b.st, 2)))
}

// failingReader fails the load pass of an Import (the second read from
// offset 0) half-way.
type failingReader struct {
	data   []byte
	passes int
}

func (r *failingReader) ReadAt(b []byte, off int64) (int, error) {
	if off == 0 {
		r.passes++
	}
	if r.passes >= 2 && off+int64(len(b)) > int64(len(r.data)/2) {
		return 0, io.ErrClosedPipe
	}
	return bytes.NewReader(r.data).ReadAt(b, off)
}

func TestInterruptedRestoreIsFinishedOnAcquisition(t *testing.T) {
	ctx := t.Context()
	objs := dirStore(t)
	a := releasedNode(t, objs, 3, 300, 700)
	ref, _, err := a.mgr.Store().Latest(ctx, 3)
	require.NoError(t, err)
	data, err := a.mgr.Store().Get(ctx, ref)
	require.NoError(t, err)

	dir := t.TempDir()
	b := newNode(t, objs, dir)
	statetest.Fill(t, b.st, 3, 40, 20, "b")
	_, err = b.st.Import(3, &failingReader{data: data}, int64(len(data))) // a restore that died half-way
	require.ErrorIs(t, err, io.ErrClosedPipe)
	require.NoError(t, b.st.Close())
	b = newNode(t, objs, dir) // restarted
	_, err = b.st.Position(3)
	require.ErrorIs(t, err, state.ErrRestorePending)

	require.NoError(t, b.mgr.Acquired(ctx, 3, 2))
	require.Empty(t, cmp.Diff(statetest.Dump(t, a.st, 3), statetest.Dump(t, b.st, 3)))
	require.Equal(t, uint64(700), position(t, b.st, 3))
}

func TestInterruptedRestoreWithoutSnapshotIsDropped(t *testing.T) {
	ctx := t.Context()
	b := newNode(t, dirStore(t), "")
	statetest.Fill(t, b.st, 0, 40, 20, "b")
	other := newNode(t, dirStore(t), "")
	statetest.Fill(t, other.st, 0, 40, 20, "o")
	var buf bytes.Buffer
	_, err := other.st.Export(0, 1, &buf)
	require.NoError(t, err)
	_, err = b.st.Import(0, &failingReader{data: buf.Bytes()}, int64(buf.Len()))
	require.Error(t, err)

	require.NoError(t, b.mgr.Acquired(ctx, 0, 1))
	require.Equal(t, 1.0, b.counter(t, "clickpipe_snapshot_restores_total", "dropped"))
	require.Empty(t, statetest.Dump(t, b.st, 0))
	require.Zero(t, position(t, b.st, 0))
}

func TestRetentionKeepsTheNewest(t *testing.T) {
	ctx := t.Context()
	a := newNode(t, dirStore(t), "")
	require.NoError(t, a.mgr.Acquired(ctx, 1, 1))
	for _, seq := range []uint64{10, 20, 20, 30, 40} {
		statetest.Fill(t, a.st, 1, 10, seq, "a")
		a.mgr.SnapshotOwned(ctx)
	}
	refs, err := a.mgr.Store().List(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, []snapshot.Ref{{Partition: 1, LastSeq: 30, Key: snapshot.Key(1, 30)},
		{Partition: 1, LastSeq: 40, Key: snapshot.Key(1, 40)}}, refs)
	require.Equal(t, 4.0, a.counter(t, "clickpipe_snapshot_writes_total", "ok"), "an unchanged checkpoint is not written again")

	a.mgr.Released(ctx, 1, false)
	statetest.Fill(t, a.st, 1, 10, 50, "a")
	a.mgr.SnapshotOwned(ctx)
	latest, _, err := a.mgr.Store().Latest(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, uint64(40), latest.LastSeq, "a released partition is not snapshotted")
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, snapshot.DefaultConfig().Validate())
	bad := snapshot.Config{Interval: 0, Keep: 0}
	err := bad.Validate()
	require.ErrorContains(t, err, "snapshot.interval")
	require.ErrorContains(t, err, "snapshot.keep")
	_, err = snapshot.New(bad, nil, nil, quiet, nil)
	require.Error(t, err)
}

// Prepare restores a partition this node does not own ahead of a
// takeover, so that Acquired then restores nothing; it leaves an owned
// partition alone.
func TestPrepareRestoresAheadOfTheTakeover(t *testing.T) {
	ctx := t.Context()
	objs := dirStore(t)
	a, b := newNode(t, objs, ""), newNode(t, objs, "")
	statetest.Fill(t, a.st, 1, 120, 2000, "a")
	statetest.Fill(t, b.st, 1, 30, 10, "b")
	require.NoError(t, a.mgr.Acquired(ctx, 1, 1))
	a.mgr.SnapshotOwned(ctx)
	// a goes silent; b is next.
	b.mgr.Prepare(ctx, 1)
	require.Equal(t, 1.0, b.counter(t, "clickpipe_snapshot_restores_total", "ahead"))
	require.Equal(t, uint64(2000), position(t, b.st, 1))
	require.Empty(t, cmp.Diff(statetest.Dump(t, a.st, 1), statetest.Dump(t, b.st, 1)))
	require.NoError(t, b.mgr.Acquired(ctx, 1, 2))
	require.Equal(t, 1.0, b.counter(t, "clickpipe_snapshot_restores_total", "kept"), "nothing left to restore")
	require.Zero(t, b.counter(t, "clickpipe_snapshot_restores_total", "restored"))

	// An owned partition is never prepared: its range is the sessionizer's.
	statetest.Fill(t, a.st, 1, 10, 3000, "a2")
	a.mgr.SnapshotOwned(ctx)
	owned := statetest.Dump(t, b.st, 1)
	b.mgr.Prepare(ctx, 1)
	require.Equal(t, 1.0, b.counter(t, "clickpipe_snapshot_restores_total", "ahead"))
	require.Empty(t, cmp.Diff(owned, statetest.Dump(t, b.st, 1)))
}

// A local state a little behind the newest snapshot, and recent, is kept
// and replayed forward (snapshot.replay_within); one further behind, or
// older than half the stream's retention, is replaced by the snapshot.
func TestLocalStateCloseBehindIsReplayedForward(t *testing.T) {
	ctx := t.Context()
	objs := dirStore(t)
	a := releasedNode(t, objs, 1, 120, 2000) // snapshot at 2000

	cfg := snapshot.DefaultConfig()
	cfg.ReplayWithin, cfg.StreamRetention = 1000, 7*24*time.Hour
	checkpoint := func(n *node, seq uint64, committed time.Time) {
		t.Helper()
		require.NoError(t, n.st.Update(func(txn *badger.Txn) error {
			return txn.Set(state.CheckpointKey(1), state.EncodeCheckpoint(&state.Checkpoint{LastSeq: seq, CommittedAt: committed.UnixMilli()}))
		}))
	}
	for _, c := range []struct {
		name      string
		seq       uint64
		committed time.Time
		replay    bool
	}{
		{"1000 behind, committed a minute ago", 1000, time.Now().Add(-time.Minute), true},
		{"1001 behind", 999, time.Now().Add(-time.Minute), false},
		{"committed four days ago (retention 7 days)", 1500, time.Now().Add(-96 * time.Hour), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newNodeWith(t, objs, "", cfg)
			statetest.Fill(t, b.st, 1, 30, 10, "b")
			checkpoint(b, c.seq, c.committed)
			local := statetest.Dump(t, b.st, 1)
			b.mgr.Prepare(ctx, 1) // ahead of a takeover: the same rule
			require.NoError(t, b.mgr.Acquired(ctx, 1, 2))
			if c.replay {
				require.Equal(t, 1.0, b.counter(t, "clickpipe_snapshot_restores_total", "replay"))
				require.Zero(t, b.counter(t, "clickpipe_snapshot_restores_total", "ahead"))
				require.Empty(t, cmp.Diff(local, statetest.Dump(t, b.st, 1)), "kept as it was")
				require.Equal(t, c.seq, position(t, b.st, 1))
				return
			}
			require.Equal(t, 1.0, b.counter(t, "clickpipe_snapshot_restores_total", "ahead"))
			require.Zero(t, b.counter(t, "clickpipe_snapshot_restores_total", "replay"))
			require.Empty(t, cmp.Diff(statetest.Dump(t, a.st, 1), statetest.Dump(t, b.st, 1)))
			require.Equal(t, uint64(2000), position(t, b.st, 1))
		})
	}
}
