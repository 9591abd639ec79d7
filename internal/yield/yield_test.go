package yield

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestYieldsOnlyWhenSaturatedAndReceiving(t *testing.T) {
	g := New(0.5)
	require.False(t, g.Yielding(), "idle")
	g.saturated.Store(true)
	require.False(t, g.Yielding(), "saturated, but no intake")
	g.Intake()
	require.True(t, g.Yielding())
	start := time.Now()
	g.Pace(context.Background(), 30*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond, "share 0.5: sleep as long as the work took")
	require.Equal(t, 30*time.Millisecond, g.Yielded())
	g.intake.Store(time.Now().Add(-3 * time.Second).UnixNano())
	require.False(t, g.Yielding(), "intake quiet for 2 s")
	var none *Governor
	none.Intake()
	none.Pace(context.Background(), time.Second)
	require.False(t, none.Yielding())
	require.False(t, New(1).Yielding())
}

func TestRunDetectsSaturation(t *testing.T) {
	for _, tc := range []struct {
		name string
		busy float64 // cores used
		want bool
	}{{"saturated", 1.0, true}, {"half", 0.5, false}} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(0.5)
			start := time.Now()
			g.cpu = func() int64 {
				return int64(float64(time.Since(start)) * tc.busy * float64(runtime.GOMAXPROCS(0)))
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { g.Run(ctx, 20*time.Millisecond); close(done) }()
			time.Sleep(100 * time.Millisecond)
			cancel()
			<-done
			require.Equal(t, tc.want, g.saturated.Load())
		})
	}
}
