package archive_test

import (
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
