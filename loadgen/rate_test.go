package loadgen

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestProfileRateAt(t *testing.T) {
	p := Profile{Rate: 50_000, RampFor: 10 * time.Second, SpikeRate: 500_000, SpikeAt: 60 * time.Second, SpikeFor: 60 * time.Second}
	tests := []struct {
		at   time.Duration
		want float64
	}{
		{0, 500}, {5 * time.Second, 25_000}, {10 * time.Second, 50_000}, {59 * time.Second, 50_000},
		{60 * time.Second, 500_000}, {119 * time.Second, 500_000}, {120 * time.Second, 50_000},
	}
	for _, tt := range tests {
		t.Run(tt.at.String(), func(t *testing.T) { require.InDelta(t, tt.want, p.RateAt(tt.at), 1) })
	}
}

func TestProfileEvents(t *testing.T) {
	p := Profile{Rate: 1000, SpikeRate: 10_000, SpikeAt: 2 * time.Second, SpikeFor: time.Second}
	require.InDelta(t, 1000*4+10_000, p.Events(5*time.Second), 1)
	require.InDelta(t, 500, Profile{Rate: 1000}.Events(500*time.Millisecond), 1)
}

// countEvents runs workers against a pacer for d of fake time and counts
// events by second.
func countEvents(t *testing.T, p Profile, batch int, flush time.Duration, workers int, d time.Duration) []int {
	t.Helper()
	var perSecond []int
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		pc := NewPacer(p, batch, flush)
		start := time.Now()
		perSecond = make([]int, int(d/time.Second)+1)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					due, n, err := pc.Wait(ctx)
					if err != nil {
						return
					}
					mu.Lock()
					perSecond[int(due.Sub(start)/time.Second)] += n
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	})
	return perSecond[:len(perSecond)-1]
}

func TestPacerHoldsRate(t *testing.T) {
	got := countEvents(t, Profile{Rate: 50_000}, 100, time.Second, 8, 10*time.Second)
	for i, n := range got {
		require.InDelta(t, 50_000, n, 100, "second %d", i)
	}
}

func TestPacerSpikeAndRamp(t *testing.T) {
	p := Profile{Rate: 10_000, RampFor: 4 * time.Second, SpikeRate: 100_000, SpikeAt: 6 * time.Second, SpikeFor: 2 * time.Second}
	got := countEvents(t, p, 100, time.Second, 4, 10*time.Second)
	require.Less(t, got[0], 2_000, "ramp starts low")
	require.InDelta(t, 10_000, got[5], 100)
	require.InDelta(t, 100_000, got[6], 200)
	require.InDelta(t, 100_000, got[7], 200)
	require.InDelta(t, 10_000, got[9], 100)
}

func TestPacerLowRateUsesFlushInterval(t *testing.T) {
	// 20 events/s with batch 100 and a 500 ms flush: batches of 10.
	synctest.Test(t, func(t *testing.T) {
		pc := NewPacer(Profile{Rate: 20}, 100, 500*time.Millisecond)
		start := time.Now()
		for i := range 4 {
			due, n, err := pc.Wait(t.Context())
			require.NoError(t, err)
			require.Equal(t, 10, n)
			require.Equal(t, time.Duration(i)*500*time.Millisecond, due.Sub(start))
		}
	})
}

func TestPacerBacklogIsNotDropped(t *testing.T) {
	// A sender stuck for 3 s gets the missed slots at once afterwards.
	synctest.Test(t, func(t *testing.T) {
		pc := NewPacer(Profile{Rate: 100}, 10, 0)
		_, _, err := pc.Wait(t.Context())
		require.NoError(t, err)
		time.Sleep(3 * time.Second)
		t0 := time.Now()
		total := 0
		for total < 300 {
			_, n, err := pc.Wait(t.Context())
			require.NoError(t, err)
			total += n
		}
		require.Less(t, time.Since(t0), 100*time.Millisecond)
	})
}
