package regulation_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/regulation"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, buffertest.LeakOptions()...)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// published records the forget messages a registry publishes.
type published struct {
	mu   sync.Mutex
	msgs map[int][]event.Forget
	ids  []string
}

func (p *published) Publish(_ context.Context, part int, body []byte, hdr map[string]string) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var f event.Forget
	if err := json.Unmarshal(body, &f); err != nil {
		return 0, err
	}
	if hdr[event.HeaderControl] != event.ControlForget {
		return 0, io.ErrUnexpectedEOF
	}
	if p.msgs == nil {
		p.msgs = map[int][]event.Forget{}
	}
	p.msgs[part] = append(p.msgs[part], f)
	p.ids = append(p.ids, hdr["Nats-Msg-Id"])
	return 1, nil
}

type linker map[string][]string

func (l linker) Linked(ids []string) ([]string, error) {
	out := slices.Clone(ids)
	for _, id := range ids {
		out = append(out, l[id]...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func open(t *testing.T, b *buffer.Buffer, deps regulation.Deps) *regulation.Registry {
	t.Helper()
	ctx := context.Background()
	var err error
	deps.Regulations, err = b.KeyValue(ctx, buffer.RegulationsBucket)
	require.NoError(t, err)
	deps.Users, err = b.KeyValue(ctx, buffer.RegulatedUsersBucket)
	require.NoError(t, err)
	deps.Partitions = 4
	r, err := regulation.New(regulation.DefaultConfig(), deps, quiet, nil)
	require.NoError(t, err)
	require.NoError(t, r.Open(ctx))
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestRequestsAreChecked(t *testing.T) {
	r := open(t, buffertest.New(t, buffertest.Config(), ""), regulation.Deps{})
	for _, tc := range []struct {
		name string
		q    regulation.Request
	}{
		{"no type", regulation.Request{UserIDs: []string{"u"}}},
		{"unknown type", regulation.Request{Type: "erase", UserIDs: []string{"u"}}},
		{"no ids", regulation.Request{Type: "delete"}},
		{"empty id", regulation.Request{Type: "delete", UserIDs: []string{""}}},
		{"control character", regulation.Request{Type: "delete", UserIDs: []string{"a\x00b"}}},
		{"bad regulation id", regulation.Request{ID: "a b", Type: "delete", UserIDs: []string{"u"}}},
		{"too many ids", regulation.Request{Type: "delete", UserIDs: make([]string, 1001)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := r.Create(context.Background(), tc.q, "ops")
			require.ErrorIs(t, err, regulation.ErrInvalid)
		})
	}
	require.Empty(t, r.List())
}

func TestCreateIsIdempotent(t *testing.T) {
	r := open(t, buffertest.New(t, buffertest.Config(), ""), regulation.Deps{})
	ctx := context.Background()
	a, created, err := r.Create(ctx, regulation.Request{Type: "suppress", UserIDs: []string{"u2", "u1", "u1"}}, "ops")
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, []string{"u1", "u2"}, a.UserIDs)
	require.Equal(t, regulation.StatusCompleted, a.Status, "a suppression has no store to clear")
	b, created, err := r.Create(ctx, regulation.Request{Type: "suppress", UserIDs: []string{"u1", "u2"}}, "someone else")
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, a.ID, b.ID)
	require.Equal(t, "ops", b.RequestedBy)

	_, _, err = r.Create(ctx, regulation.Request{ID: "mine", Type: "delete", UserIDs: []string{"u3"}}, "ops")
	require.NoError(t, err)
	_, _, err = r.Create(ctx, regulation.Request{ID: "mine", Type: "delete", UserIDs: []string{"u4"}}, "ops")
	require.ErrorIs(t, err, regulation.ErrConflict)
	require.Len(t, r.List(), 2)
}

// Suppression and erasure survive a restart of the buffer and the
// registry; unsuppress lifts a suppression but not an erasure.
func TestStatusSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b := buffertest.New(t, buffertest.Config(), dir)
	r := open(t, b, regulation.Deps{})
	_, _, err := r.Create(ctx, regulation.Request{Type: "suppress_with_delete", UserIDs: []string{"gone"}}, "ops")
	require.NoError(t, err)
	_, _, err = r.Create(ctx, regulation.Request{Type: "suppress", UserIDs: []string{"quiet"}}, "ops")
	require.NoError(t, err)
	require.True(t, r.Suppressed("gone"))
	require.NoError(t, r.Close())
	require.NoError(t, b.Close())

	b = buffertest.New(t, buffertest.Config(), dir)
	r = open(t, b, regulation.Deps{})
	require.True(t, r.Suppressed("gone"))
	require.True(t, r.Erased("gone"))
	require.True(t, r.Suppressed("quiet"))
	require.False(t, r.Erased("quiet"))
	require.False(t, r.Suppressed("someone"))

	_, _, err = r.Create(ctx, regulation.Request{Type: "unsuppress", UserIDs: []string{"gone", "quiet"}}, "ops")
	require.NoError(t, err)
	require.False(t, r.Suppressed("gone"))
	require.False(t, r.Suppressed("quiet"))
	require.True(t, r.Erased("gone"), "unsuppress does not bring data back")
}

// A crash after the regulation record but before the ids' status: the
// next start repairs the status from the record.
func TestOpenRepairsUsersFromRegulations(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	ctx := context.Background()
	regs, err := b.KeyValue(ctx, buffer.RegulationsBucket)
	require.NoError(t, err)
	rec, _ := json.Marshal(regulation.Regulation{ID: "crashed", Type: "suppress", UserIDs: []string{"u"},
		Requested: []string{"u"}, Created: time.Now().UTC(), Status: regulation.StatusCompleted})
	_, err = regs.Create(ctx, "crashed", rec)
	require.NoError(t, err)
	r := open(t, b, regulation.Deps{})
	require.True(t, r.Suppressed("u"))
}

// A regulation seen before the status of its ids (another node stored
// the record and has not yet written the ids, or its watcher delivers
// them later): whatever takes the pending deletions already finds its ids
// erased, so a lake pass cannot run with them and report them done while
// their rows stay (seen in CI: one row left in the lake).
func TestRegulationErasesBeforeItsIDsStatus(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	r := open(t, b, regulation.Deps{})
	ctx := context.Background()
	regs, err := b.KeyValue(ctx, buffer.RegulationsBucket)
	require.NoError(t, err)
	created := time.Now().UTC()
	rec, _ := json.Marshal(regulation.Regulation{ID: "elsewhere", Type: "delete", UserIDs: []string{"u", "anon"},
		Requested: []string{"u"}, Created: created, Status: regulation.StatusPending,
		Stores: map[string]regulation.StoreProgress{"lake/events": {Status: regulation.StatusPending}}})
	_, err = regs.Create(ctx, "elsewhere", rec)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(r.Pending("lake/events")) == 1 }, 5*time.Second, 10*time.Millisecond)
	for _, id := range []string{"u", "anon"} {
		require.True(t, r.ErasedEvent(id, created.Add(-time.Minute)), "%s: erased data", id)
		require.True(t, r.Erased(id), id)
		require.False(t, r.ErasedEvent(id, created.Add(time.Minute)), "%s: collected after a delete", id)
	}
	require.False(t, r.ErasedEvent("other", created.Add(-time.Minute)))
}

func TestErasedEvent(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	r := open(t, buffertest.New(t, buffertest.Config(), ""), regulation.Deps{Now: func() time.Time { return now }})
	ctx := context.Background()
	_, _, err := r.Create(ctx, regulation.Request{Type: "delete", UserIDs: []string{"del"}}, "ops")
	require.NoError(t, err)
	_, _, err = r.Create(ctx, regulation.Request{Type: "suppress_with_delete", UserIDs: []string{"swd"}}, "ops")
	require.NoError(t, err)
	for _, tc := range []struct {
		id       string
		received time.Time
		want     bool
	}{
		{"del", now.Add(-time.Hour), true},
		{"del", now, true},
		{"del", now.Add(time.Second), false}, // collection goes on after a delete
		{"del", time.Time{}, true},
		{"swd", now.Add(time.Hour), true},
		{"other", now.Add(-time.Hour), false},
	} {
		require.Equal(t, tc.want, r.ErasedEvent(tc.id, tc.received), "%s at %s", tc.id, tc.received)
	}
}

// A deletion publishes one forget message per partition of its ids
// (linked ones included), completes the state store once every partition
// reported, and completes when the lake stores are done too.
func TestDeletionProgress(t *testing.T) {
	pub := &published{}
	r := open(t, buffertest.New(t, buffertest.Config(), ""), regulation.Deps{Publisher: pub,
		Linker: linker{"user": {"anon-1", "anon-2", "anon-3"}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	reg, _, err := r.Create(ctx, regulation.Request{Type: "delete", UserIDs: []string{"user"}}, "ops")
	require.NoError(t, err)
	require.Equal(t, []string{"anon-1", "anon-2", "anon-3", "user"}, reg.UserIDs)
	require.Equal(t, regulation.StatusPending, reg.Status)
	require.Len(t, r.Pending(regulation.StoreState), 1)
	require.Eventually(t, func() bool { g, _ := r.Get(reg.ID); return g.ForgetPublished }, 5*time.Second, 10*time.Millisecond)
	pub.mu.Lock()
	var ids []string
	for p, fs := range pub.msgs {
		require.Len(t, fs, 1, "partition %d", p)
		for _, id := range fs[0].IDs {
			require.Equal(t, p, event.Partition(id, 4))
			ids = append(ids, id)
		}
	}
	pub.mu.Unlock()
	require.ElementsMatch(t, reg.UserIDs, ids)

	parts := append([]int(nil), reg.StatePartitions...)
	for i, p := range parts {
		require.NoError(t, r.Forgotten(ctx, reg.ID, p, 1, 10))
		require.NoError(t, r.Forgotten(ctx, reg.ID, p, 0, 0), "a repeated report counts once")
		g, _ := r.Get(reg.ID)
		want := regulation.StatusPending
		if i == len(parts)-1 {
			want = regulation.StatusDone
		}
		require.Equal(t, want, g.Stores[regulation.StoreState].Status)
	}
	g, _ := r.Get(reg.ID)
	require.Equal(t, int64(len(parts)), g.Stores[regulation.StoreState].Found)
	require.Equal(t, int64(10*len(parts)), g.Stores[regulation.StoreState].Removed)
	require.Empty(t, r.Pending(regulation.StoreState))
	require.Len(t, r.Pending(regulation.StoreLakeEvents), 1)
	for _, s := range []string{regulation.StoreLakeEvents, regulation.StoreLakeSessions, regulation.StoreLakeFailed} {
		require.NotEqual(t, regulation.StatusCompleted, g.Status)
		require.NoError(t, r.Progress(ctx, reg.ID, s, regulation.StoreProgress{Status: regulation.StatusDone, Found: 2, Removed: 3}))
		g, _ = r.Get(reg.ID)
	}
	require.Equal(t, regulation.StatusCompleted, g.Status)
	require.False(t, g.Completed.IsZero())
	require.NoError(t, r.Forgotten(ctx, "unknown", 0, 1, 1), "an unknown regulation is logged, not retried forever")
}
