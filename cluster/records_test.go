package cluster

import (
	"fmt"
	"testing"

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
