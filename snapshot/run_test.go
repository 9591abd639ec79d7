package snapshot_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/state/statetest"
)

// TestRunSnapshotsOwnedPartitionsEveryInterval runs the periodic loop on
// the bubble's clock: five minutes cost no wall time. Badger runs inside
// the bubble too (it must: it makes channels in the caller's goroutine and
// closes them in its own).
func TestRunSnapshotsOwnedPartitionsEveryInterval(t *testing.T) {
	objs := dirStore(t)
	synctest.Test(t, func(t *testing.T) {
		a := newNode(t, objs, "")
		statetest.Fill(t, a.st, 0, 20, 100, "a")
		statetest.Fill(t, a.st, 1, 20, 200, "a")
		ctx := context.Background()
		require.NoError(t, a.mgr.Acquired(ctx, 0, 1))
		errc := make(chan error, 1)
		go func() { errc <- a.mgr.Run(ctx) }()

		time.Sleep(5*time.Minute - time.Second)
		synctest.Wait()
		_, ok, err := a.mgr.Store().Latest(ctx, 0)
		require.NoError(t, err)
		require.False(t, ok, "nothing before the interval")

		time.Sleep(2 * time.Second)
		synctest.Wait()
		latest, ok, err := a.mgr.Store().Latest(ctx, 0)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, uint64(100), latest.LastSeq)
		_, ok, err = a.mgr.Store().Latest(ctx, 1)
		require.NoError(t, err)
		require.False(t, ok, "partition 1 is not owned")

		require.NoError(t, a.mgr.Shutdown(ctx))
		require.NoError(t, <-errc)
	})
}

func TestShutdownWithoutRun(t *testing.T) {
	a := newNode(t, dirStore(t), "")
	require.NoError(t, a.mgr.Shutdown(t.Context()))
	require.NoError(t, a.mgr.Run(t.Context()), "a Run after Shutdown returns at once")
}
