package cluster

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// T14 fast tier with cluster.partition_ownership, the fault tour: one
// three-node cluster at a 6 s lease ttl under witnessed load goes through
// each fault of issue 15's list in turn, every node's query API asked
// about every driver user all along:
//
//  1. every route link delayed 150 ms (intake must go on acknowledging);
//  2. kill -9 of the owner of partition 0, then its restart;
//  3. the owner of partition 0 isolated (every route link from and to it
//     blackholed) until its partitions are taken over, then healed;
//  4. graceful leave (SIGTERM) of the owner of partition 0, then its
//     return (join).
//
// Then the checkers: no answer at a superseded epoch (staleAnswers), no
// acknowledged event lost, each in exactly one lake row, no lake gap or
// overlap, the owners' state equal to the stream's and to a single-node
// replay. Handover times are reported (measured, not asserted). The long
// tier runs each fault on its own, longer (a 30 s isolation, a rolling
// restart, a fourth node), with the negative controls, and the SIGSTOP of
// an owner past its ttl (TestPausedPartitionOwner), left out here for CI's
// time: it is the isolation's zombie seen from the other side (a node
// that wakes to find its leases gone, rather than one cut off while
// running).
func TestOwnershipFaultTour(t *testing.T) {
	began := time.Now()
	step := func(format string, args ...any) { // with the time into the test
		t.Helper()
		t.Logf("[%s] "+format, append([]any{time.Since(began).Round(time.Second)}, args...)...)
	}
	// A 6 s ttl, not 3 s: two thirds of it outlast an election of the
	// leases bucket, whose leader the faults may take away; with 3 s every
	// node's leases lapsed while the isolated node's bucket was re-elected.
	c := startClusterTTL(t, "", 6*time.Second, "CLICKPIPE_CLUSTER_PARTITION_OWNERSHIP=true")
	// A lighter load than the long tier's (each sender at most ten batches
	// of 20 a second): the checkers read back, and replay, fewer events.
	d, ctx, stopLoad := loadedAt(t, c, 100*time.Millisecond)
	before := c.placedLeases(ctx, 0)
	var askers []*asker
	for i := range c.nodes {
		askers = append(askers, c.ask(i, len(before)))
	}
	start := time.Now()

	// 1. Latency on every route.
	acked := d.ackedCount()
	for _, l := range c.links {
		l.setDelay(150 * time.Millisecond)
	}
	wait(ctx, 5*time.Second)
	for _, l := range c.links {
		l.setDelay(0)
	}
	step("1. every route link delayed 150 ms for 5 s: %d events acknowledged meanwhile", d.ackedCount()-acked)
	require.Positive(t, d.ackedCount()-acked, "intake acknowledged nothing with 150 ms route latency")

	// 2. Crash of an owner.
	v := c.index(before["partition-0"].Holder)
	victim, beforeKill := c.nodes[v].name, before
	step("2. kill -9 %s, owner of partition-0 at epoch %d", victim, before["partition-0"].Epoch)
	killedAt := time.Now()
	c.kill9(v, false)
	c.takenOver((v+1)%3, victim, before, time.Minute+2*c.ttl)
	step("   taken over %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	c.restart(v)
	c.holdsShare(v)

	// 3. The owner cut off from its peers, still running (zombie).
	before = c.heldLeases((v+1)%3, len(before))
	z := c.index(before["partition-0"].Holder)
	step("3. isolating %s, owner of partition-0 at epoch %d", c.nodes[z].name, before["partition-0"].Epoch)
	c.cut(z, (*faultProxy).blackhole)
	cut := time.Now()
	c.takenOver((z+1)%3, c.nodes[z].name, before, time.Minute+2*c.ttl)
	step("   taken over %s after the cut", time.Since(cut).Round(time.Millisecond))
	c.explainSlow(cut, 15*time.Second)
	wait(ctx, 2*time.Second) // the zombie still cut off, its successors answering
	c.cut(z, (*faultProxy).heal)
	c.holdsShare(z)

	// 4. Graceful leave and return.
	before = c.heldLeases((z+1)%3, len(before))
	g := c.index(before["partition-0"].Holder)
	step("4. SIGTERM %s, owner of partition-0 at epoch %d", c.nodes[g].name, before["partition-0"].Epoch)
	left := time.Now()
	require.Positive(t, c.leave(g))
	c.takenOver((g+1)%3, c.nodes[g].name, before, time.Minute+2*c.ttl)
	step("   taken over %s after the SIGTERM", time.Since(left).Round(time.Millisecond))
	c.restart(g)
	c.holdsShare(g)

	wait(ctx, 2*time.Second)
	stopLoad()
	step("load stopped")
	// Reported before the checks, which may fail.
	crash, _ := c.handovers(victim, beforeKill, killedAt, time.Time{}, time.Time{})
	_, graceful := c.handovers("", nil, time.Time{}, start, time.Now())
	t.Logf("handovers after the kill -9 (kill to new owner): %s; graceful over the tour (the SIGTERM, and placement moving partitions back to returning nodes; release to new owner): %s",
		summary(crash), summary(graceful))
	for _, h := range append(crash, graceful...) {
		if h.took > 10*time.Second {
			c.explain(h.p, h.at.Add(-h.took), h.at)
		}
	}
	var answers []askedAnswer
	for _, a := range askers {
		a.end()
		answers = append(answers, a.answers...)
	}
	stale, ok, example := c.staleAnswers(answers)
	t.Logf("answers over the tour (%s): %d with 200 of %d, %d stale %s",
		time.Since(start).Round(time.Second), ok, len(answers), stale, example)
	require.Zero(t, stale, "stale answers: %s", example)
	require.Positive(t, ok, "the nodes answered some queries")

	r := d.check(0)
	step("cluster report: %s", r)
	c.logStreamSizes(0)
	requireNoLoss(t, r, 200)
	checkLakeRows(t, c, d, 0)
	checkLake(t, c)
	step("lake checked")
	checkRoutedState(t, c, 0, 1)
}

// heldLeases waits until node i sees each of the n partition leases held
// where it is placed (a released lease is absent until taken), and returns
// the leases.
func (c *testCluster) heldLeases(i, n int) map[string]leaseView {
	var leases map[string]leaseView
	clickpipetest.Eventually(c.t, 30*time.Second+2*c.ttl, func() bool {
		leases = c.partitionLeases(i)
		return len(leases) == n && heldWherePlaced(leases)
	}, "every partition lease held where it is placed, as %s sees them", c.nodes[i].name)
	return leases
}

// explainSlow tells partition 0's story since from when it took longer
// than slow.
func (c *testCluster) explainSlow(from time.Time, slow time.Duration) {
	if time.Since(from) > slow {
		c.explain(0, from, time.Now())
	}
}

// logStreamSizes reports the messages and bytes of EVENTS and of DUPS (the
// owners' duplicate lists for the lake writer), read through node i.
func (c *testCluster) logStreamSizes(i int) {
	for _, name := range []string{"EVENTS", "DUPS"} {
		if info, err := c.namedStreamInfo(i, name); err == nil {
			c.t.Logf("stream %s: %d messages, %d bytes", name, info.State.Msgs, info.State.Bytes)
		}
	}
}
