package cluster

import (
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Crash handover times at the default lease ttl (issue 15's target: p99
// ≤ 15 s after a crash), measured over many kills of one cluster rather
// than one kill per test: under full witnessed load, with twelve
// partitions, each node in turn is killed -9, its partitions are taken
// over, it starts again and takes its share back, CLICKPIPE_CLUSTER_KILLS
// times (6 by default). Every partition the victim held is timed from the
// kill to the next "owning partition" (lease takeover, snapshot restore,
// consumer open). Measured, not asserted (BENCHMARKS.md); the checkers of
// the other tests still run at the end. Long tier:
//
//	go test -c -o /tmp/cluster.test ./test/cluster && cd test/cluster
//	CLICKPIPE_CLUSTER_LONG=1 /tmp/cluster.test -test.v -test.run 'TestCrashHandovers$'
func TestCrashHandovers(t *testing.T) {
	longTier(t)
	kills := 6
	if v := os.Getenv("CLICKPIPE_CLUSTER_KILLS"); v != "" {
		var err error
		kills, err = strconv.Atoi(v)
		require.NoError(t, err, "CLICKPIPE_CLUSTER_KILLS")
	}
	const partitions = 12
	c := startClusterTTL(t, "", 15*time.Second, "CLICKPIPE_CLUSTER_PARTITION_OWNERSHIP=true",
		"CLICKPIPE_BUFFER_PARTITIONS="+strconv.Itoa(partitions))
	d, ctx, stopLoad := loaded(t, c)
	c.placedLeases(ctx, 0)

	var all []handover
	for k := range kills {
		v := k % 3
		survivor := (v + 1) % 3
		before := c.heldLeases(survivor, partitions)
		victim := c.nodes[v].name
		killedAt := time.Now()
		c.kill9(v, false)
		c.takenOver(survivor, victim, before, time.Minute+2*c.ttl)
		crash, _ := c.handovers(victim, before, killedAt, time.Time{}, time.Time{})
		t.Logf("kill %d of %d, %s: %s", k+1, kills, victim, summary(crash))
		for _, h := range crash {
			if h.took > 15*time.Second {
				c.explain(h.p, killedAt, h.at)
			}
		}
		all = append(all, crash...)
		c.restart(v)
		c.holdsShare(v)
	}
	stopLoad()
	t.Logf("crash handovers over %d kills: %s", kills, percentiles(all))

	r := d.check(0)
	t.Logf("cluster report: %s", r)
	requireNoLoss(t, r, 200)
	checkLakeRows(t, c, d, 0)
	checkLake(t, c)
	checkRoutedState(t, c, 0, 1)
}

// percentiles is "n, median, p90, p99, max" of handovers (nearest rank).
func percentiles(hs []handover) string {
	if len(hs) == 0 {
		return "none"
	}
	ds := make([]time.Duration, len(hs))
	for i, h := range hs {
		ds[i] = h.took
	}
	slices.Sort(ds)
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(ds))+0.999999) - 1
		return ds[max(0, min(i, len(ds)-1))].Round(10 * time.Millisecond)
	}
	over := 0
	for _, d := range ds {
		if d > 15*time.Second {
			over++
		}
	}
	return "n=" + strconv.Itoa(len(ds)) + " median " + rank(0.5).String() + " p90 " + rank(0.9).String() +
		" p99 " + rank(0.99).String() + " max " + ds[len(ds)-1].Round(10*time.Millisecond).String() +
		", over 15 s: " + strconv.Itoa(over)
}
