package ingest

import (
	"math"
	"sync"
	"time"
)

// bucket is a token bucket refilled at rate tokens/s up to burst.
type bucket struct {
	tokens float64
	last   time.Time
}

// limiter holds one bucket per source. Disabled when rate is 0.
type limiter struct {
	rate  float64
	burst float64
	mu    sync.Mutex
	b     map[int]*bucket
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), b: map[int]*bucket{}}
}

// take spends n tokens of source's bucket, or reports how long until they
// are available. A request larger than the burst costs the whole burst.
func (l *limiter) take(source, n int, now time.Time) (bool, time.Duration) {
	if l.rate <= 0 || n <= 0 {
		return true, 0
	}
	cost := math.Min(float64(n), l.burst)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b[source]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.b[source] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= cost {
		b.tokens -= cost
		return true, 0
	}
	wait := time.Duration((cost - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}
