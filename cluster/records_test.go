package cluster

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Rendezvous placement spreads leases and moves only the leaving member's.
func TestDesiredPlacement(t *testing.T) {
	all := []string{"l"}
	members := func(names ...string) []memberRecord {
		var out []memberRecord
		for _, n := range names {
			out = append(out, memberRecord{Node: n, Leases: all})
		}
		return out
	}
	var names []string
	for p := range 64 {
		names = append(names, fmt.Sprintf("partition-%d", p))
	}
	all = names
	three, two := members("a", "b", "c"), members("a", "b")
	counts := map[string]int{}
	for _, n := range names {
		before, after := desired(n, three), desired(n, two)
		counts[before]++
		if before != "c" {
			require.Equal(t, before, after, "%s moved although its member stayed", n)
		}
		require.NotEqual(t, "c", after)
	}
	for _, m := range []string{"a", "b", "c"} {
		require.Greater(t, counts[m], 10, "member %s gets a share: %v", m, counts)
	}
	require.Empty(t, desired("other", three), "no member contends for it")
}

// A member whose entry stops changing (paused, partitioned: its entry not
// expired yet) is left out of the live members placement and contention
// use, so no holder hands it a lease and no contender waits for it to take
// a free one; heard again, it must be seen for two TTLs anew.
func TestSilentMemberIsNotStable(t *testing.T) {
	const ttl = time.Second
	m := &Manager{cfg: Config{NodeName: "a", TTL: ttl}}
	now := time.Now()
	live := []memberRecord{{Node: "a", rev: 1}, {Node: "b", rev: 5}, {Node: "c", rev: 7}}
	m.noteBeats(live, now.Add(-10*ttl))
	m.since = map[string]time.Time{"a": now.Add(-10 * ttl), "b": now.Add(-10 * ttl), "c": now.Add(-10 * ttl)}
	live[2].rev = 8 // c heartbeats, b does not
	m.noteBeats(live, now)
	names := func(rs []memberRecord) (out []string) {
		for _, r := range rs {
			out = append(out, r.Node)
		}
		return out
	}
	heard := m.audible(live, now)
	require.Equal(t, []string{"a", "c"}, names(heard), "b is silent")
	require.Equal(t, []string{"a", "c"}, names(m.stable(heard)))
	live[1].rev = 6 // b heard again
	m.noteBeats(live, now)
	heard = m.audible(live, now)
	require.Equal(t, []string{"a", "b", "c"}, names(heard))
	require.Equal(t, []string{"a", "c"}, names(m.stable(heard)), "b must be seen for two ttls anew")
	m.since["b"] = now.Add(-3 * ttl)
	require.Equal(t, []string{"a", "b", "c"}, names(m.stable(heard)))
}

// sentBound never puts a write's sending later than it was seen nor
// earlier than it was sent (clocks at the same rate, any offset between
// them, any delivery delays), and a write delivered late counts from
// about when it was sent: from the earliest clock origin its holder's
// writes showed, so the wait before a takeover does not restart when the
// leases bucket's new leader commits a crashed holder's last renewal.
func TestSentBoundBracketsTheSending(t *testing.T) {
	const ttl = 15 * time.Second
	rng := rand.New(rand.NewPCG(7, 11))
	for trial := range 200 {
		l := &lease{m: &Manager{cfg: Config{TTL: ttl}}}
		local := time.Now()
		// The holder's clock origin on this node's clock (its start): any
		// time in the last hour; its writes begin up to a minute on.
		origin := local.Add(-time.Duration(rng.Int64N(int64(time.Hour))))
		holderNow := local.Sub(origin) + time.Duration(rng.Int64N(int64(time.Minute)))
		nonce := fmt.Sprintf("n%d", trial%3) // incarnations change now and then
		var minDelay time.Duration
		for k := range 40 { // 40 writes stay within originWindow
			holderNow += ttl/6 + time.Duration(rng.Int64N(int64(ttl/24)))
			delay := time.Duration(rng.Int64N(int64(30 * time.Millisecond)))
			if rng.IntN(10) == 0 {
				delay += time.Duration(rng.Int64N(int64(10 * time.Second))) // committed late
			}
			sent := origin.Add(holderNow)
			seen := sent.Add(delay)
			rec := leaseRecord{Holder: "h", Nonce: nonce, Sent: int64(holderNow)}
			got := l.sentBound(rec, seen)
			require.False(t, got.Before(sent), "trial %d write %d: bound %s before the sending", trial, k, sent.Sub(got))
			require.False(t, got.After(seen), "trial %d write %d: bound %s after it was seen", trial, k, got.Sub(seen))
			if k == 0 || delay < minDelay {
				minDelay = delay
			}
			// Within the window, the bound is as early as the promptest
			// write so far allows.
			require.LessOrEqual(t, got.Sub(sent), minDelay, "trial %d write %d", trial, k)
		}
		// Without a stamp, or from an unknown holder, it is when seen.
		require.Equal(t, local, l.sentBound(leaseRecord{Holder: "h", Nonce: nonce}, local))
		require.Equal(t, local, l.sentBound(leaseRecord{Sent: 5}, local))
	}
}

// A new incarnation of the holder (another nonce) starts its own origin:
// the old one says nothing about the new clock.
func TestSentBoundForgetsAnotherIncarnation(t *testing.T) {
	l := &lease{m: &Manager{cfg: Config{TTL: 15 * time.Second}}}
	now := time.Now()
	l.sentBound(leaseRecord{Holder: "h", Nonce: "a", Sent: int64(time.Hour)}, now)
	// The restarted holder's clock is near zero: with the old origin the
	// bound would be an hour before now.
	next := now.Add(time.Second)
	require.Equal(t, next, l.sentBound(leaseRecord{Holder: "h", Nonce: "b", Sent: int64(time.Second)}, next))
}
