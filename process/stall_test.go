package process_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/process"
)

// brokenFetcher fails every fetch while broken is set.
type brokenFetcher struct {
	process.Fetcher
	broken *atomic.Bool
}

func (f brokenFetcher) Fetch(ctx context.Context, max int, wait time.Duration) ([]*event.Message, error) {
	if f.broken.Load() {
		time.Sleep(wait)
		return nil, errors.New("injected: consumer unreachable")
	}
	return f.Fetcher.Fetch(ctx, max, wait)
}

// A partition whose fetches keep failing turns Healthy (so /readyz) false
// after process.stall_after, naming it; once it fetches again Healthy is
// nil.
func TestStalledPartitionIsUnhealthy(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	var broken atomic.Bool
	wrap := func(f process.Fetcher) process.Fetcher { return brokenFetcher{f, &broken} }
	cfg := oracleConfig(16, 2)
	cfg.StallAfter = 2 * time.Second
	st := openStore(t, t.TempDir())
	defer st.Close()
	r := startProcessor(t, cfg, st, consumers{b: b, ackWait: 30 * time.Second, wrap: wrap}, b)
	defer r.shutdown(t)

	time.Sleep(3 * time.Second) // idle partitions advance: nothing to do
	require.NoError(t, r.proc.Healthy())
	broken.Store(true)
	var err error
	stalled := func() bool { // every partition named (each stalls on its own clock)
		err = r.proc.Healthy()
		for p := range 4 {
			if err == nil || !strings.Contains(err.Error(), "partition "+itoa(p)+" has not advanced for") {
				return false
			}
		}
		return true
	}
	require.Eventually(t, stalled, 10*time.Second, 50*time.Millisecond, "not every partition named")
	t.Logf("healthy: %v", err)
	broken.Store(false)
	require.Eventually(t, func() bool { return r.proc.Healthy() == nil }, 20*time.Second, 50*time.Millisecond,
		"partitions fetching again are healthy")
}

// heldFetcher passes fetches through until its first non-empty batch,
// then holds every later fetch until release is closed.
type heldFetcher struct {
	process.Fetcher
	release <-chan struct{}
	gave    *atomic.Bool
}

func (f heldFetcher) Fetch(ctx context.Context, max int, wait time.Duration) ([]*event.Message, error) {
	if f.gave.Load() {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	msgs, err := f.Fetcher.Fetch(ctx, max, wait)
	if len(msgs) > 0 {
		f.gave.Store(true)
	}
	return msgs, err
}

// A partition whose last fetched batch began with a message older than
// process.caught_up_within is named by CatchingUp (a /readyz warning)
// while Healthy stays nil; once a fetch finds it caught up, CatchingUp is
// nil. Before its first fetch a partition is named as opening.
func TestCatchingUpPartitionIsNamed(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	evs := viewing("u-behind", time.Now().Add(-time.Hour))
	publish(t, b, evs)
	p := event.Partition(evs[0].UserKey(), 4)
	time.Sleep(1500 * time.Millisecond) // the backlog ages past caught_up_within

	release := make(chan struct{})
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	wrap := func(f process.Fetcher) process.Fetcher { return heldFetcher{f, release, &atomic.Bool{}} }
	cfg := oracleConfig(16, 2) // the held fetcher keeps the partition at its first batch
	cfg.CaughtUpWithin = time.Second
	st := openStore(t, t.TempDir())
	defer st.Close()
	r := startProcessor(t, cfg, st, consumers{b: b, ackWait: 30 * time.Second, wrap: wrap}, b)
	defer r.shutdown(t)
	defer releaseAll()

	want := "partition " + itoa(p) + " catching up: "
	var err error
	require.Eventually(t, func() bool {
		err = r.proc.CatchingUp()
		return err != nil && strings.Contains(err.Error(), want)
	}, 20*time.Second, 20*time.Millisecond, "the partition with the backlog named: %v", err)
	t.Logf("catching up: %v", err)
	require.NoError(t, r.proc.Healthy(), "catching up is a warning, not unreadiness")
	for q := range 4 {
		if q != p {
			require.NotContains(t, err.Error(), "partition "+itoa(q)+" catching up", "partition %d had no backlog", q)
		}
	}

	releaseAll()
	require.Eventually(t, func() bool { return r.proc.CatchingUp() == nil }, 20*time.Second, 20*time.Millisecond,
		"caught up once a fetch finds the partition's consumer with no old message")
}
