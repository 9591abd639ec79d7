package archive_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
)

// A compaction run beside serve leaves out the rows of users an erasure
// marker names, although the objects it merges still hold them, and
// archive status reports the marker as pending.
func TestCompactionHonoursErasureMarkers(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	dir, err := archive.OpenDir(t.TempDir())
	require.NoError(t, err)
	cfg := testConfig()
	cfg.FlushInterval = 100 * time.Millisecond
	r := start(t, cfg, b, dir, nil)
	var sent []event.Event
	for wave := range 3 {
		evs := make([]event.Event, 74)
		for i := range evs {
			evs[i] = makeEvent("web", wave*74+i)
		}
		publishEvents(t, b, evs, 37)
		sent = append(sent, evs...)
		eventually(t, 10*time.Second, func() bool { return committedRows(t, dir, archive.TableEvents) == int64(len(sent)) },
			"wave %d not committed", wave)
	}
	r.shutdown(t)
	const victim = "user-3" // makeEvent: 6 of the 222 events
	require.NoError(t, archive.PutErasureMarkerForTest(t.Context(), dir, archive.TableEvents, "reg-1", time.Now(), victim))
	statuses, err := archive.Status(t.Context(), dir)
	require.NoError(t, err)
	require.Equal(t, []string{"reg-1"}, statuses[0].PendingErasures)

	res, err := archive.Compact(t.Context(), dir, archive.TableEvents,
		archive.CompactOptions{Before: time.Now(), TargetBytes: 64 << 20, RowGroupRows: 1 << 17})
	require.NoError(t, err)
	require.Equal(t, 1, res.Into)
	rows, _ := readTable[archive.EventRow](t, dir, archive.TableEvents)
	var kept []event.Event
	for _, e := range sent {
		if e.UserID != victim {
			kept = append(kept, e)
		}
	}
	require.Len(t, rows, len(kept))
	for _, row := range rows {
		require.NotEqual(t, victim, row.UserID)
	}
	requireGlobExactlyOnce(t, dir.Root(), kept)
}

// memErasures is a regulation registry in memory.
type memErasures struct {
	mu      sync.Mutex
	erased  map[string]time.Time
	pending map[string][]archive.Erasure // by table
	done    map[string]int64             // "<id>/<table>" → rows removed
}

func (m *memErasures) ErasedEvent(id string, received time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.erased[id]
	return ok && !received.After(at)
}

func (m *memErasures) PendingErasures(table string) []archive.Erasure {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.pending[table])
}

func (m *memErasures) Erased(_ context.Context, id, table string, _, removed int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending[table] = slices.DeleteFunc(m.pending[table], func(e archive.Erasure) bool { return e.ID == id })
	m.done[id+"/"+table] = removed
	return nil
}

func (m *memErasures) request(id string, users ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for _, u := range users {
		m.erased[u] = now
	}
	for _, table := range archive.Tables() {
		m.pending[table] = append(m.pending[table], archive.Erasure{ID: id, UserIDs: users, Created: now})
	}
}

func (m *memErasures) removed(id, table string) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.done[id+"/"+table]
	return n, ok
}

// An erasure requested while the object store is down waits for it and
// then completes: committed objects rewritten, new ranges without the
// user, every other row kept, glob and manifest reads agreeing.
func TestErasureWaitsOutAnOutage(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	dir, err := archive.OpenDir(t.TempDir())
	require.NoError(t, err)
	var down atomic.Bool
	st := &faultStore{ObjectStore: dir, failPut: func(string) error {
		if down.Load() {
			return errStoreDown
		}
		return nil
	}}
	er := &memErasures{erased: map[string]time.Time{}, pending: map[string][]archive.Erasure{}, done: map[string]int64{}}
	cfg := testConfig()
	cfg.FlushInterval = 100 * time.Millisecond
	r := startWith(t, cfg, st, archive.Deps{Consumers: consumers{b, cfg}, Erasures: er})
	sent := sendEvents(370) // user-3 has 10 of them
	publishEvents(t, b, sent, 37)
	eventually(t, 10*time.Second, func() bool { return committedRows(t, dir, archive.TableEvents) == 370 }, "lake incomplete")

	const victim = "user-3"
	down.Store(true)
	er.request("reg-1", victim)
	time.Sleep(2500 * time.Millisecond) // two passes fail
	_, done := er.removed("reg-1", archive.TableEvents)
	require.False(t, done, "erasure reported done while the store was down")
	down.Store(false)
	eventually(t, 10*time.Second, func() bool { _, ok := er.removed("reg-1", archive.TableEvents); return ok },
		"erasure not applied after the outage")
	n, _ := er.removed("reg-1", archive.TableEvents)
	require.Equal(t, int64(10), n)

	// Events of the user that arrive now (sent before the request) stay out.
	late := make([]event.Event, 37)
	for i := range late {
		late[i] = makeEvent("web", 370+i)
	}
	publishEvents(t, b, late, 37)
	eventually(t, 10*time.Second, func() bool { return committedRows(t, dir, archive.TableEvents) == 370-10+36 },
		"late events not archived without the user")
	r.shutdown(t)
	var kept []event.Event
	for _, e := range append(sent, late...) {
		if e.UserID != victim {
			kept = append(kept, e)
		}
	}
	requireExactlyOnce(t, dir, kept)
	requireGlobExactlyOnce(t, dir.Root(), kept)
	statuses, err := archive.Status(t.Context(), dir)
	require.NoError(t, err)
	for _, s := range statuses {
		require.Empty(t, s.PendingErasures, s.Table)
	}
}
