package cluster

import (
	"fmt"
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
