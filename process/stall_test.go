package process_test

import (
	"context"
	"errors"
	"strings"
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
