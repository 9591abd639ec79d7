package cluster

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	clustering "github.com/clickpipe/clickpipe/cluster"
	"github.com/clickpipe/clickpipe/internal/clickpipetest"
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
//
// The slow handovers seen so far came from kills of the node leading the
// leases bucket (no compare-and-swap until the bucket elects a leader, and
// renewals the victim sent just before its death committed late), which a
// kill in turn hits only now and then. CLICKPIPE_CLUSTER_KILL=leases-leader
// kills that node every time instead; either way each kill says whether
// the victim led the bucket, and the handovers are also reported apart.
func TestCrashHandovers(t *testing.T) {
	longTier(t)
	kills := 6
	if v := os.Getenv("CLICKPIPE_CLUSTER_KILLS"); v != "" {
		var err error
		kills, err = strconv.Atoi(v)
		require.NoError(t, err, "CLICKPIPE_CLUSTER_KILLS")
	}
	target := os.Getenv("CLICKPIPE_CLUSTER_KILL")
	require.Contains(t, []string{"", "in-turn", "leases-leader"}, target, "CLICKPIPE_CLUSTER_KILL")
	const partitions = 12
	// EVENTS gets 1 GiB, not the suites' 256 MiB: that filled to the
	// intake gate's 95 % mark after about 26,000 batches (4-5 minutes),
	// and from then on every ingest answered 503, so the later kills of a
	// run were made on an idle cluster. 1 GiB keeps the load up for about
	// twelve kills.
	c := startClusterTTL(t, "", 15*time.Second, "CLICKPIPE_CLUSTER_PARTITION_OWNERSHIP=true",
		"CLICKPIPE_BUFFER_PARTITIONS="+strconv.Itoa(partitions), "CLICKPIPE_BUFFER_MAX_BYTES=1GiB")
	d, ctx, stopLoad := loaded(t, c)
	c.placedLeases(ctx, 0)

	var all, ledBucket []handover
	var opens []time.Duration   // from the new owner's "acquired lease" to its "owning partition"
	var resumed []time.Duration // from the kill to the new owner's first commit
	for k := range kills {
		v := k % 3
		bucketLeader := c.leasesLeader(ctx, (v+1)%3)
		if target == "leases-leader" {
			v = c.index(bucketLeader)
		}
		survivor := (v + 1) % 3
		before := c.heldLeases(survivor, partitions)
		victim := c.nodes[v].name
		killedAt := time.Now()
		c.kill9(v, false)
		c.takenOver(survivor, victim, before, time.Minute+2*c.ttl)
		c.restart(v)
		c.holdsShare(v)
		// Only now: the successors log "owning partition" after the
		// lease changed hands (restore, consumer open).
		crash, _ := c.handovers(victim, before, killedAt, time.Time{}, time.Time{})
		t.Logf("crash handovers, kill %d of %d, %s (leases bucket leader %s): %s; %s; %s; %d events acknowledged so far", k+1, kills, victim,
			bucketLeader, summary(crash), c.intakeBack(v, killedAt), c.leaseTrouble(v, killedAt), d.ackedCount())
		if victim == bucketLeader {
			ledBucket = append(ledBucket, crash...)
		}
		for _, h := range crash {
			if h.took > 15*time.Second {
				c.explain(h.p, killedAt, h.at)
			}
		}
		all = append(all, crash...)
		for _, h := range crash {
			if acq, ok := c.acquiredAt(h.to, h.p); ok {
				opens = append(opens, h.to.at.Sub(acq))
			}
			if at, ok := c.loggedAtEpoch(h.to, h.p, "partition resumed: first commit since its open"); ok {
				resumed = append(resumed, at.Sub(killedAt))
			} else {
				c.linesAfter(h.to, h.p, 6)
			}
		}
	}
	stopLoad()
	t.Logf("crash handovers over %d kills: %s", kills, percentiles(all))
	t.Logf("of which the victim led the leases bucket: %s", percentiles(ledBucket))
	t.Logf("of which from the lease acquired to the partition owned (restore, consumer open): %s", durations(opens))
	t.Logf("from the kill to the new owner's first commit of the partition (the load never stops): %s", durations(resumed))
	for _, msg := range []string{"partition restored from snapshot", "partition restored from snapshot ahead of a takeover"} {
		var took []time.Duration
		for _, nd := range c.nodes {
			for _, l := range nd.logged(msg) {
				switch d := l["duration"].(type) {
				case float64: // slog's JSON has durations in nanoseconds
					took = append(took, time.Duration(d))
				case string:
					if d, err := time.ParseDuration(d); err == nil {
						took = append(took, d)
					}
				}
			}
		}
		t.Logf("%q: %s", msg, durations(took))
	}

	checkAfterLoad(t, c, d, 0, 1)
}

// intakeBack says when the survivors of node v's kill at killedAt last
// reopened their intake gate within a minute (EVENTS or SESSIONS without a
// leader closes it): the JetStream part of a slow handover.
func (c *testCluster) intakeBack(v int, killedAt time.Time) string {
	n, last := c.survivorsLogged(v, "intake gate reopened", killedAt)
	if n == 0 {
		return "the survivors' intake stayed open"
	}
	return "the survivors' intake reopened " + last.Round(10*time.Millisecond).String() + " after the kill"
}

// leaseTrouble says how long after node v's kill at killedAt the
// survivors' lease renewals kept failing (the leases bucket without a
// leader), and how many writes they saw late (a renewal the victim sent
// before its death, committed afterwards).
func (c *testCluster) leaseTrouble(v int, killedAt time.Time) string {
	n, last := c.survivorsLogged(v, "renewing lease", killedAt)
	s := "no renewal failed"
	if n > 0 {
		s = strconv.Itoa(n) + " renewals failed, the last " + last.Round(10*time.Millisecond).String() + " after the kill"
	}
	n, last = c.survivorsLogged(v, "lease write seen late; the wait counts from its sending", killedAt)
	if n == 0 {
		return s + ", no lease write seen late"
	}
	return s + ", " + strconv.Itoa(n) + " lease writes seen late (the last " + last.Round(10*time.Millisecond).String() + " after the kill)"
}

// survivorsLogged counts the lines msg the nodes other than v logged
// within a minute after killedAt, and how long after it the last came.
func (c *testCluster) survivorsLogged(v int, msg string, killedAt time.Time) (n int, last time.Duration) {
	for i, nd := range c.nodes {
		if i == v {
			continue
		}
		for _, l := range nd.logged(msg) {
			if at := logTime(l); at.After(killedAt) && at.Sub(killedAt) < time.Minute {
				n++
				last = max(last, at.Sub(killedAt))
			}
		}
	}
	return n, last
}

// leasesLeader is the node leading the leases bucket, as node i sees it
// (within 20 s: right after a kill the bucket may have none).
func (c *testCluster) leasesLeader(ctx context.Context, i int) string {
	var leader string
	clickpipetest.Eventually(c.t, 20*time.Second, func() bool {
		info, err := c.namedStreamInfo(i, "KV_"+clustering.LeasesBucket)
		if err == nil && info.Cluster != nil {
			leader = info.Cluster.Leader
		}
		return leader != "" || ctx.Err() != nil
	}, "the leases bucket has a leader")
	return leader
}

// acquiredAt is when the node of o logged "acquired lease" for partition
// p at o's epoch.
func (c *testCluster) acquiredAt(o owning, p int) (time.Time, bool) {
	nd := c.nodes[c.index(o.node)]
	for _, l := range nd.logged("acquired lease") {
		if e, _ := l["epoch"].(float64); l["lease"] == "partition-"+strconv.Itoa(p) && uint64(e) == o.epoch {
			return logTime(l), true
		}
	}
	return time.Time{}, false
}

// loggedAtEpoch is when the node of o first logged msg for partition p at
// o's epoch.
func (c *testCluster) loggedAtEpoch(o owning, p int, msg string) (time.Time, bool) {
	nd := c.nodes[c.index(o.node)]
	for _, l := range nd.logged(msg) {
		if e, _ := l["epoch"].(float64); l["partition"] == float64(p) && uint64(e) == o.epoch {
			return logTime(l), true
		}
	}
	return time.Time{}, false
}

// linesAfter logs the first n lines the node of o logged about
// partition p from its owning at o (a handover that never logged its
// first commit).
func (c *testCluster) linesAfter(o owning, p, n int) {
	nd := c.nodes[c.index(o.node)]
	for _, l := range nd.proc.Lines() {
		if pp, ok := l["partition"].(float64); !ok || int(pp) != p || logTime(l).Before(o.at) {
			continue
		}
		if n--; n < 0 {
			return
		}
		b, _ := json.Marshal(l)
		c.t.Logf("p%d at epoch %d, no first commit logged; %s then: %s", p, o.epoch, o.node, b)
	}
}

// percentiles is "n, median, p90, p99, max" of handovers (nearest rank).
func percentiles(hs []handover) string {
	ds := make([]time.Duration, len(hs))
	for i, h := range hs {
		ds[i] = h.took
	}
	return durations(ds)
}

// durations is "n, median, p90, p99, max" of ds (nearest rank), and how
// many exceed 15 s.
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	ds = slices.Clone(ds)
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
