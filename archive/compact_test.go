package archive_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
)

// noDelete fails every Delete: a compaction that dies right after its
// commit point.
type noDelete struct{ archive.ObjectStore }

func (noDelete) Delete(context.Context, string) error {
	return errors.New("injected: crash before delete")
}

func TestCompactMergesSmallRangesExactlyOnce(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	dir, err := archive.OpenDir(t.TempDir())
	require.NoError(t, err)
	cfg := testConfig()
	cfg.FlushInterval = 100 * time.Millisecond
	r := start(t, cfg, b, dir, nil)
	var sent []event.Event
	for wave := range 6 { // low traffic: one small range per wave
		evs := make([]event.Event, 40)
		for i := range evs {
			evs[i] = makeEvent("web", wave*40+i)
		}
		publishEvents(t, b, evs, 40)
		sent = append(sent, evs...)
		eventually(t, 10*time.Second, func() bool { return committedRows(t, dir, archive.TableEvents) == int64(len(sent)) },
			"wave %d not committed", wave)
	}
	// A range counts as committed from its manifest on; wait until the
	// archiver has also published it (the failing store below fails the
	// deletion of a staged copy too).
	eventually(t, 10*time.Second, func() bool {
		staged, err := dir.List(t.Context(), archive.StagingPrefix)
		return err == nil && len(staged) == 0
	}, "last range not published")
	before, err := archive.LoadLedger(t.Context(), dir, archive.TableEvents)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(before.Ranges), 6)

	opt := archive.CompactOptions{Before: time.Now(), TargetBytes: 64 << 20, RowGroupRows: 1 << 17}
	// A compaction that stops after its commit point leaves superseded
	// ranges that readers ignore ...
	res, err := archive.Compact(t.Context(), noDelete{dir}, archive.TableEvents, opt)
	require.Error(t, err)
	mid, err := archive.LoadLedger(t.Context(), dir, archive.TableEvents)
	require.NoError(t, err)
	require.Len(t, mid.Ranges, 1)
	require.NotEmpty(t, mid.Superseded)
	require.Empty(t, mid.Overlaps)
	requireExactlyOnce(t, dir, sent)
	requireGlobExactlyOnce(t, dir.Root(), sent) // the old generation only
	// ... and the next run finishes the clean-up.
	res, err = archive.Compact(t.Context(), dir, archive.TableEvents, opt)
	require.NoError(t, err)
	require.Equal(t, 1, res.Finished)
	after, err := archive.LoadLedger(t.Context(), dir, archive.TableEvents)
	require.NoError(t, err)
	require.Len(t, after.Ranges, 1)
	require.Empty(t, after.Superseded)
	require.Equal(t, before.End(), after.End())
	requireExactlyOnce(t, dir, sent)
	requireGlobExactlyOnce(t, dir.Root(), sent) // the new generation only
	statuses, err := archive.Status(t.Context(), dir)
	require.NoError(t, err)
	require.Zero(t, statuses[0].Orphans)
	require.Len(t, statuses[0].Partitions, 1)
	require.Equal(t, 1, statuses[0].Partitions[0].Objects)

	// The live archiver keeps appending after the compacted range.
	more := make([]event.Event, 40)
	for i := range more {
		more[i] = makeEvent("web", 1000+i)
	}
	publishEvents(t, b, more, 40)
	sent = append(sent, more...)
	eventually(t, 10*time.Second, func() bool { return committedRows(t, dir, archive.TableEvents) == int64(len(sent)) },
		"archiving after compaction")
	r.shutdown(t)
	requireExactlyOnce(t, dir, sent)
	requireGlobExactlyOnce(t, dir.Root(), sent)
	if qdir, ok := duckdbDir(t); ok {
		for _, glob := range []bool{false, true} {
			s := duckdbQuery(t, qdir, dir.Root(), archive.TableEvents, glob)
			require.Equal(t, int64(len(sent)), s.Rows, "glob %v", glob)
			require.Equal(t, int64(len(sent)), s.DistinctIDs, "glob %v", glob)
		}
	}
}
