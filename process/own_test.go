package process_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/state"
)

// dupsLog records the duplicate-list records a partition owner publishes
// (cmd's stream-backed publisher is tested in cmd).
type dupsLog struct {
	mu   sync.Mutex
	recs map[int][]state.DupsRecord
}

func (d *dupsLog) LastDups(_ context.Context, p int) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if rs := d.recs[p]; len(rs) > 0 {
		return rs[len(rs)-1].Through, nil
	}
	return 0, nil
}

func (d *dupsLog) PublishDups(_ context.Context, r state.DupsRecord) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recs[r.Partition] = append(d.recs[r.Partition], r)
	return nil
}

// covered is how far partition p's records reach without a gap from 0.
func (d *dupsLog) covered(p int) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var end uint64
	for _, r := range d.recs[p] {
		if r.After <= end {
			end = max(end, r.Through)
		}
	}
	return end
}

func (r *rig) checkpoint(p int) (state.Checkpoint, uint64) {
	r.t.Helper()
	var cp state.Checkpoint
	var epoch uint64
	require.NoError(r.t, r.store.View(func(txn *badger.Txn) error {
		if err := readPS(txn, p, &cp); err != nil {
			return err
		}
		var err error
		epoch, err = state.ReadEpoch(txn, p)
		return err
	}))
	return cp, epoch
}

func (r *rig) lastSeq() uint64 {
	r.t.Helper()
	st, err := r.b.State(context.Background(), buffer.EventsStream)
	require.NoError(r.t, err)
	return st.LastSeq
}

func (r *rig) counter(name string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	require.NoError(r.t, err)
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// counterOf is counter name's value for the series whose label has value.
func (r *rig) counterOf(name, label, value string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	require.NoError(r.t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// known is whether partition p's state holds user u.
func (r *rig) known(p int, u string) bool {
	r.t.Helper()
	var found bool
	require.NoError(r.t, r.store.View(func(txn *badger.Txn) error {
		_, err := txn.Get(state.UserKey(p, u))
		found = err == nil
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		return err
	}))
	return found
}

// usersNamed returns n viewing users named prefix + i whose events all
// fall in partition p.
func usersNamed(prefix string, p, n int, t0 time.Time) []event.Event {
	var evs []event.Event
	for i := 0; n > 0; i++ {
		u := prefix + itoa(i)
		if event.Partition(u, 4) == p {
			evs = append(evs, viewing(u, t0)...)
			n--
		}
	}
	return evs
}

// usersOf returns n viewing users whose events all fall in partition p.
func usersOf(p, n int, t0 time.Time) []event.Event {
	var evs []event.Event
	for i := 0; n > 0; i++ {
		u := "own-" + itoa(i)
		if event.Partition(u, 4) != p {
			continue
		}
		evs = append(evs, viewing(u, t0)...)
		n--
	}
	return evs
}

// startOwnRig starts a rig whose partitions are consumed only when owned
// (Deps.Dynamic), with a duplicate-lists log and a metrics registry.
func startOwnRig(t *testing.T) *rig {
	r := newRig(t)
	r.dynamic, r.dups, r.reg = true, &dupsLog{recs: map[int][]state.DupsRecord{}}, prometheus.NewRegistry()
	r.start()
	return r
}

// TestOwnDisownFenced: with Deps.Dynamic a partition is consumed only
// between Own and Disown; its commits record the epoch beside the
// checkpoint; a commit while the ownership is not valid (the lease lost)
// is refused and its batch given back; the duplicate lists are published
// without a gap.
func TestOwnDisownFenced(t *testing.T) {
	r := startOwnRig(t)
	defer r.stop()
	ctx := context.Background()
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	const p, other = 1, 2
	publish(t, r.b, usersOf(p, 3, t0))
	publish(t, r.b, usersOf(other, 2, t0))
	last := r.lastSeq()

	valid := atomic.Bool{}
	valid.Store(true)
	require.NoError(t, r.proc.Own(ctx, p, process.Ownership{Epoch: 7, Valid: valid.Load}))
	eventually(t, 10*time.Second, func() bool {
		cp, _ := r.checkpoint(p)
		return cp.LastSeq > 0 && r.dups.(*dupsLog).covered(p) == cp.LastSeq
	})
	cp, epoch := r.checkpoint(p)
	require.Equal(t, uint64(7), epoch, "the epoch is recorded beside the checkpoint")
	require.LessOrEqual(t, cp.LastSeq, last)
	ocp, oepoch := r.checkpoint(other)
	require.Zero(t, ocp.LastSeq, "a partition never owned is not consumed")
	require.Zero(t, oepoch)

	require.NoError(t, r.proc.Disown(ctx, p))
	publish(t, r.b, usersOf(p, 1, t0.Add(time.Minute)))
	require.NoError(t, r.proc.Own(ctx, other, process.Ownership{Epoch: 8}))
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(other); return c.LastSeq > 0 })
	after, _ := r.checkpoint(p)
	require.Equal(t, cp, after, "a disowned partition is not consumed")

	// The lease is lost: every commit of p is refused until it is valid
	// again, and the refused batch is not applied.
	valid.Store(false)
	require.NoError(t, r.proc.Own(ctx, p, process.Ownership{Epoch: 9, Valid: valid.Load}))
	eventually(t, 10*time.Second, func() bool { return r.counter("clickpipe_process_fenced_commits_total") > 0 })
	refused, repoch := r.checkpoint(p)
	require.Equal(t, cp, refused, "a commit after the lease was lost must be refused")
	require.Equal(t, uint64(7), repoch)
	valid.Store(true)
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(p); return c.LastSeq > cp.LastSeq })
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(p); return r.dups.(*dupsLog).covered(p) == c.LastSeq })
	_, epoch = r.checkpoint(p)
	require.Equal(t, uint64(9), epoch)
}

// TestOwnedAgainReopensFromTheStore: a partition owned again under a new
// epoch while its slot still runs (its lease was lost, its commits refused,
// no Disown in between) starts over from the store, which another owner
// moved on meanwhile (here: its checkpoint set past a batch this node never
// applied, as a snapshot restore does), instead of resuming with the memory
// and consumer position it had. Resuming re-applied what the other owner had
// applied: the owners' sessions held 14 % more events than the stream in a
// three-node run with a paused owner (TestPausedPartitionOwner).
func TestOwnedAgainReopensFromTheStore(t *testing.T) {
	r := startOwnRig(t)
	defer r.stop()
	ctx := context.Background()
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	const p = 1
	known := func(u string) bool { return r.known(p, u) }
	batch := func(prefix string) []event.Event { return usersNamed(prefix, p, 2, t0) }

	publish(t, r.b, batch("a-"))
	first := atomic.Bool{}
	first.Store(true)
	require.NoError(t, r.proc.Own(ctx, p, process.Ownership{Epoch: 1, Valid: first.Load}))
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(p); return c.LastSeq == r.lastSeq() })

	// The lease is lost; the slot's commits are refused (each time the
	// partition is reopened from its checkpoint). Another owner applies
	// batch b and this node learns of it only through the store (a
	// snapshot restored on acquisition).
	first.Store(false)
	b := batch("b-")
	publish(t, r.b, b)
	eventually(t, 10*time.Second, func() bool { return r.counter("clickpipe_process_fenced_commits_total") > 0 })
	moved := r.lastSeq()
	require.NoError(t, r.store.Update(func(txn *badger.Txn) error {
		return txn.Set(state.CheckpointKey(p), state.EncodeCheckpoint(&state.Checkpoint{LastSeq: moved}))
	}))
	require.NoError(t, r.proc.Own(ctx, p, process.Ownership{Epoch: 2}))
	time.Sleep(2 * time.Second) // the refused batch b is redelivered (nak after 1 s)
	c := batch("c-")
	publish(t, r.b, c)
	eventually(t, 10*time.Second, func() bool { cp, _ := r.checkpoint(p); return cp.LastSeq == r.lastSeq() })
	require.True(t, known(c[0].UserID), "events after the new ownership are applied")
	require.False(t, known(b[0].UserID), "the batch the other owner applied was applied here again")
	_, epoch := r.checkpoint(p)
	require.Equal(t, uint64(2), epoch)
}

// TestDupsPublishedEverySoOften: a consumed partition's duplicate lists
// are published at most every couple of seconds however often it commits
// (each record is a replicated DUPS write), without a gap, and at once
// when the partition is released.
func TestDupsPublishedEverySoOften(t *testing.T) {
	r := startOwnRig(t)
	defer r.stop()
	ctx := context.Background()
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	const p = 3
	require.NoError(t, r.proc.Own(ctx, p, process.Ownership{Epoch: 5}))
	owned := time.Now()
	commits := 0
	for i := range 30 {
		publish(t, r.b, usersOf(p, 1, t0.Add(time.Duration(i)*time.Minute)))
		before, _ := r.checkpoint(p)
		eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(p); return c.LastSeq > before.LastSeq })
		commits++
	}
	elapsed := time.Since(owned)
	dl := r.dups.(*dupsLog)
	dl.mu.Lock()
	n := len(dl.recs[p])
	dl.mu.Unlock()
	t.Logf("%d commits in %s, %d duplicate-list records", commits, elapsed.Round(time.Millisecond), n)
	require.LessOrEqual(t, n, int(elapsed/(2*time.Second))+2, "records are spaced, not one per commit")

	require.NoError(t, r.proc.Disown(ctx, p))
	cp, _ := r.checkpoint(p)
	require.Equal(t, cp.LastSeq, dl.covered(p), "a release publishes through the checkpoint at once, without a gap")
}

// heldUpRig starts an ownership rig (startOwnRig) whose opens of
// partition held, after the first free ones, wait until release is
// closed (JetStream answering slowly); opens counts them.
func heldUpRig(t *testing.T, held int, free int32) (r *rig, release chan struct{}, opens *atomic.Int32) {
	return heldUpRigWith(t, held, free, func(*rig) {})
}

// heldUpRigWith is heldUpRig with setup applied to the rig before it
// starts.
func heldUpRigWith(t *testing.T, held int, free int32, setup func(*rig)) (r *rig, release chan struct{}, opens *atomic.Int32) {
	r = newRig(t)
	r.dynamic, r.dups, r.reg = true, &dupsLog{recs: map[int][]state.DupsRecord{}}, prometheus.NewRegistry()
	release, opens = make(chan struct{}), &atomic.Int32{}
	r.opening = func(ctx context.Context, id int) error {
		if id != held || opens.Add(1) <= free {
			return nil
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	setup(r)
	r.start()
	return r, release, opens
}

// TestOpenDoesNotHoldUpTheWorker: a partition's open that waits on
// JetStream (here held up on purpose; after a node's crash, seconds while
// EVENTS or the meta group elect a leader) does not stop the worker: the
// other partition it consumes keeps committing, and an Own given up
// before its open ended (the lease lost meanwhile) leaves the partition
// unconsumed. Opened inline, the worker stalled for as long as the open.
func TestOpenDoesNotHoldUpTheWorker(t *testing.T) {
	const p, held = 1, 3 // both on worker 1 of 2
	r, release, _ := heldUpRig(t, held, 0)
	defer r.stop()
	ctx := context.Background()
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	publish(t, r.b, usersOf(p, 2, t0))
	require.NoError(t, r.proc.Own(ctx, p, process.Ownership{Epoch: 1}))
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(p); return c.LastSeq == r.lastSeq() })

	octx, giveUp := context.WithCancel(ctx)
	owned := make(chan error, 1)
	go func() { owned <- r.proc.Own(octx, held, process.Ownership{Epoch: 2}) }()
	time.Sleep(200 * time.Millisecond) // the open of held is under way, and held up
	publish(t, r.b, usersOf(p, 2, t0.Add(time.Minute)))
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(p); return c.LastSeq == r.lastSeq() })

	giveUp()
	require.ErrorIs(t, <-owned, context.Canceled)
	require.NoError(t, r.proc.Disown(ctx, held))
	close(release)
	publish(t, r.b, usersOf(held, 1, t0))
	time.Sleep(500 * time.Millisecond)
	c, _ := r.checkpoint(held)
	require.Zero(t, c.LastSeq, "an Own given up before its open ended leaves the partition unconsumed")
}

// TestReopenDoesNotHoldUpTheWorker: a partition opened again from the
// store (owned again under a newer epoch; a failed batch or fetch takes
// the same way) while JetStream answers slowly does not stop the worker's
// other partition, and resumes under the new epoch once its open ends.
func TestReopenDoesNotHoldUpTheWorker(t *testing.T) {
	const p, held = 1, 3                       // both on worker 1 of 2
	r, release, opens := heldUpRig(t, held, 1) // the first open of held goes through
	defer r.stop()
	ctx := context.Background()
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	publish(t, r.b, usersOf(p, 1, t0))
	publish(t, r.b, usersOf(held, 1, t0))
	require.NoError(t, r.proc.Own(ctx, p, process.Ownership{Epoch: 1}))
	require.NoError(t, r.proc.Own(ctx, held, process.Ownership{Epoch: 2}))
	caught := func(id int) func() bool {
		return func() bool { c, _ := r.checkpoint(id); return c.LastSeq == r.lastSeq() }
	}
	eventually(t, 10*time.Second, caught(held))

	require.NoError(t, r.proc.Own(ctx, held, process.Ownership{Epoch: 3})) // owned again: reopened
	eventually(t, 10*time.Second, func() bool { return opens.Load() >= 2 })
	publish(t, r.b, usersOf(p, 2, t0.Add(time.Minute)))
	eventually(t, 10*time.Second, caught(p))

	close(release)
	publish(t, r.b, usersOf(held, 1, t0.Add(time.Minute)))
	eventually(t, 10*time.Second, caught(held))
	_, epoch := r.checkpoint(held)
	require.Equal(t, uint64(3), epoch, "resumed under the new epoch")
}

// TestPreparedConsumerIsTakenByTheOpen: a consumer Prepare made ahead of
// a takeover is what the partition's open takes while its checkpoint is
// the one it was prepared at, so the open does not create one (here every
// creation at the open is held up, as after a node's crash while the
// meta group elects a leader); once the checkpoint moved (here dropped,
// as when an interrupted restore leaves the partition to a full replay)
// the prepared consumer is left for a new one at the checkpoint + 1, and
// the events before it are applied again.
func TestPreparedConsumerIsTakenByTheOpen(t *testing.T) {
	const held = 3
	r, release, _ := heldUpRig(t, held, 0) // every open's consumer creation of held waits for release
	released := false
	defer func() {
		if !released {
			close(release)
		}
		r.stop()
	}()
	ctx := context.Background()
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	first := usersOf(held, 2, t0)
	publish(t, r.b, first)
	r.proc.Prepare(ctx, held)
	require.Equal(t, 1.0, r.counterOf("clickpipe_process_prepared_consumers_total", "result", "created"))

	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, r.proc.Own(octx, held, process.Ownership{Epoch: 1}), "opened with the prepared consumer")
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(held); return c.LastSeq == r.lastSeq() })
	require.Equal(t, 1.0, r.counterOf("clickpipe_process_prepared_consumers_total", "result", "used"))
	require.True(t, r.known(held, first[0].UserID))
	require.NoError(t, r.proc.Disown(ctx, held))

	r.proc.Prepare(ctx, held) // at the checkpoint + 1
	require.Equal(t, 2.0, r.counterOf("clickpipe_process_prepared_consumers_total", "result", "created"))
	require.NoError(t, r.store.Drop(held))
	require.False(t, r.known(held, first[0].UserID))
	close(release)
	released = true
	require.NoError(t, r.proc.Own(ctx, held, process.Ownership{Epoch: 2}))
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(held); return c.LastSeq == r.lastSeq() })
	require.Equal(t, 1.0, r.counterOf("clickpipe_process_prepared_consumers_total", "result", "stale"))
	require.True(t, r.known(held, first[0].UserID), "replayed from the stream's start, not from the prepared consumer")
}

// TestRefusedBatchIsAppliedOnceValidAgain: a batch refused because the
// ownership was not valid at its commit (a renewal late during the leases
// bucket's election: two thirds of the ttl passed, then the renewal
// succeeded and the holding was valid again) is applied once the
// ownership is valid again, before anything newer. The refused slot kept
// fetching: the newer batch came first (the refused one is redelivered
// only after its nak delay), moved the checkpoint past it, and the
// redelivery was skipped as already applied, so the state lacked it for
// good.
func TestRefusedBatchIsAppliedOnceValidAgain(t *testing.T) {
	r := startOwnRig(t)
	defer r.stop()
	ctx := context.Background()
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	const p = 1
	var valid atomic.Bool
	valid.Store(true)
	publish(t, r.b, usersNamed("a-", p, 1, t0))
	require.NoError(t, r.proc.Own(ctx, p, process.Ownership{Epoch: 1, Valid: valid.Load}))
	caught := func() bool { c, _ := r.checkpoint(p); return c.LastSeq == r.lastSeq() }
	eventually(t, 10*time.Second, caught)

	valid.Store(false)
	refused := usersNamed("b-", p, 1, t0)
	publish(t, r.b, refused)
	eventually(t, 10*time.Second, func() bool { return r.counter("clickpipe_process_fenced_commits_total") > 0 })
	valid.Store(true)
	newer := usersNamed("c-", p, 1, t0)
	publish(t, r.b, newer)
	eventually(t, 10*time.Second, caught)
	require.True(t, r.known(p, newer[0].UserID))
	require.True(t, r.known(p, refused[0].UserID), "the refused batch was skipped")
}

// heldAcker is a message's acker whose Ack waits for release or the end
// of its context (a round trip to a consumer without a leader).
type heldAcker struct {
	event.Acker
	release <-chan struct{}
}

func (a heldAcker) Ack(ctx context.Context) error {
	select {
	case <-a.release:
		return a.Acker.Ack(ctx)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// heldAcks wraps a partition consumer: the acks of partition held's
// messages wait for release.
type heldAcks struct {
	process.Fetcher
	held    int
	release <-chan struct{}
}

func (h heldAcks) Fetch(ctx context.Context, max int, wait time.Duration) ([]*event.Message, error) {
	msgs, err := h.Fetcher.Fetch(ctx, max, wait)
	for _, m := range msgs {
		if m.Partition == h.held {
			m.Acker = heldAcker{m.Acker, h.release}
		}
	}
	return msgs, err
}

// TestHungAcksDoNotStallTheWorker: acknowledging a committed batch (a
// round trip per message; seconds each while JetStream elects the
// consumer's leader) holds the worker for a bounded time: the other
// partition it consumes goes on committing while the first one's acks
// hang. Without a bound, every partition of the worker waited for them
// (7.8 s of a takeover in TestCrashHandovers).
func TestHungAcksDoNotStallTheWorker(t *testing.T) {
	const p, held = 1, 3 // both on worker 1 of 2
	release := make(chan struct{})
	r := newRig(t)
	r.dynamic, r.dups, r.reg = true, &dupsLog{recs: map[int][]state.DupsRecord{}}, prometheus.NewRegistry()
	r.wrap = func(f process.Fetcher) process.Fetcher { return heldAcks{f, held, release} }
	r.start()
	defer r.stop()
	defer close(release)
	ctx := context.Background()
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	require.NoError(t, r.proc.Own(ctx, p, process.Ownership{Epoch: 1}))
	require.NoError(t, r.proc.Own(ctx, held, process.Ownership{Epoch: 1}))
	publish(t, r.b, usersOf(held, 1, t0))
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(held); return c.LastSeq == r.lastSeq() })
	publish(t, r.b, usersOf(p, 2, t0))
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(p); return c.LastSeq == r.lastSeq() })
}

// TestOpenReadsDirectlyWhileTheConsumerIsCreated: with a DirectReader
// (cluster mode), an open whose consumer creation and stream state are
// held up (after a node's crash: the meta group and the stream's leader in
// their elections) returns at once and the partition is consumed by
// direct reads; once the consumer exists it takes over, its deliveries of
// what was read directly are skipped as applied, and every event is
// applied exactly once. A reopen with a checkpoint checks the stream by a
// direct read too. Without a DirectReader the Own waits for the creation
// (TestOpenDoesNotHoldUpTheWorker).
func TestOpenReadsDirectlyWhileTheConsumerIsCreated(t *testing.T) {
	const held = 3
	lastSeqHeld := make(chan struct{})
	r, release, opens := heldUpRigWith(t, held, 0, func(r *rig) { r.direct, r.lastSeqHeld = true, lastSeqHeld })
	released := false
	defer func() {
		if !released {
			close(release)
		}
		close(lastSeqHeld)
		r.stop()
	}()
	ctx := context.Background()
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	first := usersNamed("first", held, 3, t0)
	publish(t, r.b, first)

	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, r.proc.Own(octx, held, process.Ownership{Epoch: 1}), "opened with nothing from the meta group or the stream leader")
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(held); return c.LastSeq == r.lastSeq() })
	require.True(t, r.known(held, first[0].UserID))
	second := usersNamed("second", held, 3, t0.Add(time.Minute))
	publish(t, r.b, second)
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(held); return c.LastSeq == r.lastSeq() })
	require.True(t, r.known(held, second[0].UserID), "later messages read directly too")
	read := r.counter("clickpipe_process_direct_read_messages_total")
	require.GreaterOrEqual(t, read, 2.0)
	require.EqualValues(t, 1, opens.Load(), "one consumer creation, still under way")

	close(release)
	released = true
	eventually(t, 10*time.Second, func() bool {
		return r.counter("clickpipe_process_replayed_messages_total") >= read
	}) // the new consumer delivered what was read directly: skipped
	third := usersNamed("third", held, 3, t0.Add(2*time.Minute))
	publish(t, r.b, third)
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(held); return c.LastSeq == r.lastSeq() })
	require.True(t, r.known(held, third[0].UserID))
	require.Equal(t, read, r.counter("clickpipe_process_direct_read_messages_total"), "from the consumer once it exists")
	all := len(first) + len(second) + len(third)
	require.Equal(t, float64(all), r.counterOf("clickpipe_process_events_total", "result", "applied"), "each event applied once")
	require.Zero(t, r.counterOf("clickpipe_process_events_total", "result", "duplicate"))

	// Owned again with a checkpoint: the stream state is still held up,
	// a direct read shows the stream reaches the checkpoint.
	require.NoError(t, r.proc.Disown(ctx, held))
	octx2, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	require.NoError(t, r.proc.Own(octx2, held, process.Ownership{Epoch: 2}))
	fourth := usersNamed("fourth", held, 3, t0.Add(3*time.Minute))
	publish(t, r.b, fourth)
	eventually(t, 10*time.Second, func() bool { c, _ := r.checkpoint(held); return c.LastSeq == r.lastSeq() })
	require.True(t, r.known(held, fourth[0].UserID))
	require.Equal(t, float64(all+len(fourth)), r.counterOf("clickpipe_process_events_total", "result", "applied"))
}
