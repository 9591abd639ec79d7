package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Profile is an open-loop target rate over the run: a baseline reached
// after a linear ramp, with an optional spike window.
type Profile struct {
	// Rate is the baseline in events/s; 0 means closed loop (as fast as
	// the connections go).
	Rate float64
	// RampFor ramps linearly from 1 % of Rate up to Rate.
	RampFor time.Duration
	// SpikeRate replaces Rate during [SpikeAt, SpikeAt+SpikeFor).
	SpikeRate float64
	SpikeAt   time.Duration
	SpikeFor  time.Duration
}

// Validate reports an inconsistent profile.
func (p Profile) Validate() error {
	var errs []error
	if p.Rate < 0 || p.SpikeRate < 0 {
		errs = append(errs, errors.New("rate: must not be negative"))
	}
	if p.Rate == 0 && (p.SpikeRate > 0 || p.RampFor > 0) {
		errs = append(errs, errors.New("rate: a ramp or spike needs a baseline --rate"))
	}
	if p.SpikeRate > 0 && p.SpikeFor <= 0 {
		errs = append(errs, fmt.Errorf("spike: --spike-for must be positive with --spike-rate"))
	}
	return errors.Join(errs...)
}

// Open reports open-loop mode.
func (p Profile) Open() bool { return p.Rate > 0 }

// RateAt is the target rate t after the start.
func (p Profile) RateAt(t time.Duration) float64 {
	if p.SpikeRate > 0 && t >= p.SpikeAt && t < p.SpikeAt+p.SpikeFor {
		return p.SpikeRate
	}
	if p.RampFor > 0 && t < p.RampFor {
		return max(p.Rate*float64(t)/float64(p.RampFor), p.Rate/100)
	}
	return p.Rate
}

// Pacer hands out send slots on the profile's schedule. Slots are
// reserved in order under a lock and waited for outside it; a slot already
// due is returned at once, so a slow server builds a backlog instead of
// silently lowering the offered rate (no coordinated omission).
type Pacer struct {
	profile Profile
	batch   int
	flush   time.Duration

	mu      sync.Mutex
	started bool
	start   time.Time
	next    time.Time
}

// NewPacer returns a pacer whose slots carry up to batch events; at low
// rates a slot carries what accumulates in flush, like an SDK's
// flushInterval.
func NewPacer(p Profile, batch int, flush time.Duration) *Pacer {
	return &Pacer{profile: p, batch: max(batch, 1), flush: flush}
}

// reserve takes the next slot: when it is due and how many events it
// carries.
func (pc *Pacer) reserve(now time.Time) (time.Time, int) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if !pc.started {
		pc.started, pc.start, pc.next = true, now, now
	}
	due := pc.next
	r := pc.profile.RateAt(due.Sub(pc.start))
	n := pc.batch
	if pc.flush > 0 {
		n = min(n, max(1, int(r*pc.flush.Seconds())))
	}
	pc.next = due.Add(time.Duration(float64(n) / r * float64(time.Second)))
	return due, n
}

// Wait blocks until the next slot is due and returns its due time and
// size.
func (pc *Pacer) Wait(ctx context.Context) (time.Time, int, error) {
	due, n := pc.reserve(time.Now())
	d := time.Until(due)
	if d <= 0 {
		return due, n, ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return due, 0, ctx.Err()
	case <-t.C:
		return due, n, nil
	}
}

// Events is the number of events the profile schedules in [0, d).
func (p Profile) Events(d time.Duration) float64 {
	const step = 10 * time.Millisecond
	var n float64
	for t := time.Duration(0); t < d; t += step {
		n += p.RateAt(t) * min(step, d-t).Seconds()
	}
	return n
}
