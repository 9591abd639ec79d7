package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram is a lock-free log-linear latency histogram in microseconds:
// 16 sub-buckets per power of two, so any percentile is within about 3 %.
type histogram struct {
	counts [histBuckets]atomic.Int64
}

const (
	histSub     = 16
	histExp     = 40
	histBuckets = histExp * histSub
)

func bucketOf(us int64) int {
	if us < histSub {
		return int(max(us, 0))
	}
	e := bits.Len64(uint64(us)) - 5 // us >> e is in [16, 32)
	i := (e+1)*histSub + int(uint64(us)>>uint(e)) - histSub
	return min(i, histBuckets-1)
}

// bucketValue is the midpoint of bucket i in microseconds.
func bucketValue(i int) float64 {
	if i < histSub {
		return float64(i)
	}
	e := i/histSub - 1
	m := i%histSub + histSub
	lo := float64(uint64(m) << uint(e))
	return lo + float64(uint64(1)<<uint(e))/2
}

func (h *histogram) observe(d time.Duration) { h.counts[bucketOf(d.Microseconds())].Add(1) }

// snapshot copies the counts.
func (h *histogram) snapshot() []int64 {
	out := make([]int64, histBuckets)
	for i := range out {
		out[i] = h.counts[i].Load()
	}
	return out
}

// quantile of counts (0 < q <= 1) in milliseconds; NaN when empty.
func quantile(counts []int64, q float64) float64 {
	var total int64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return math.NaN()
	}
	rank := int64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var cum int64
	for i, c := range counts {
		cum += c
		if cum >= rank {
			return bucketValue(i) / 1000
		}
	}
	return bucketValue(len(counts)-1) / 1000
}

// diff returns a - b element-wise.
func diff(a, b []int64) []int64 {
	out := make([]int64, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func percentiles(counts []int64) Percentiles {
	var p Percentiles
	for i, c := range counts {
		p.Count += c
		if c > 0 {
			p.Max = bucketValue(i) / 1000
		}
	}
	if p.Count == 0 {
		return p
	}
	p.P50, p.P90, p.P99, p.P999 = quantile(counts, 0.5), quantile(counts, 0.9), quantile(counts, 0.99), quantile(counts, 0.999)
	return p
}

// counters are the run's live totals.
type counters struct {
	sentEvents, ackedEvents, failedEvents atomic.Int64
	requests, ackedRequests, retries      atomic.Int64
	hostile                               atomic.Int64
	netErrors                             atomic.Int64
	status                                [600]atomic.Int64
	hostileStatus                         [600]atomic.Int64
	attempt, e2e                          histogram
}
