// Package yield lets the consumers (sessionizer, archive) give the CPU to
// the tracking API when the process is saturated: intake first, so
// clients keep getting durable acknowledgements and the consumers catch up
// afterwards (their lag stays visible in /metrics and /readyz).
package yield

import (
	"context"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// Governor decides when consumers yield. The zero value never yields.
type Governor struct {
	share     float64
	intake    atomic.Int64 // unix nanos of the last intake request
	saturated atomic.Bool
	yielded   atomic.Int64 // nanoseconds slept, for metrics
	cpu       func() int64 // process CPU time in ns (tests replace it)
}

// New returns a governor that, while the process uses at least 90 % of
// its cores and the intake received a request in the last two seconds,
// keeps each consumer's busy time to share of its wall time (0 < share
// <= 1; 1 never yields).
func New(share float64) *Governor { return &Governor{share: share, cpu: cpuTime} }

// Intake records an intake request.
func (g *Governor) Intake() {
	if g != nil {
		g.intake.Store(time.Now().UnixNano())
	}
}

// Run samples the process's CPU use every interval until ctx ends.
func (g *Governor) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last, lastAt := g.cpu(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, at := g.cpu(), time.Now()
		used := float64(now-last) / float64(at.Sub(lastAt)) / float64(runtime.GOMAXPROCS(0))
		g.saturated.Store(used >= 0.9)
		last, lastAt = now, at
	}
}

// Yielding reports whether consumers yield now.
func (g *Governor) Yielding() bool {
	if g == nil || g.share <= 0 || g.share >= 1 || !g.saturated.Load() {
		return false
	}
	return time.Since(time.Unix(0, g.intake.Load())) < 2*time.Second
}

// Pace sleeps after busy time of consumer work when yielding: busy *
// (1 - share) / share, at most a second.
func (g *Governor) Pace(ctx context.Context, busy time.Duration) {
	if !g.Yielding() {
		return
	}
	d := min(time.Duration(float64(busy)*(1-g.share)/g.share), time.Second)
	if d <= 0 {
		return
	}
	g.yielded.Add(int64(d))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Yielded is the total time consumers slept to yield.
func (g *Governor) Yielded() time.Duration {
	if g == nil {
		return 0
	}
	return time.Duration(g.yielded.Load())
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime)
}
