package loadgen

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type wireEvent struct {
	Type        string         `json:"type"`
	Event       string         `json:"event"`
	MessageID   string         `json:"messageId"`
	UserID      string         `json:"userId"`
	AnonymousID string         `json:"anonymousId"`
	Timestamp   time.Time      `json:"timestamp"`
	Properties  map[string]any `json:"properties"`
	Context     struct {
		Library   struct{ Name, Version string } `json:"library"`
		UserAgent string                         `json:"userAgent"`
	} `json:"context"`
}

// generate decodes n events of one generator.
func generate(t testing.TB, pop Population, n int) []wireEvent {
	g, err := NewGenerator(pop, ShapeNode.Library(), 0, 1)
	require.NoError(t, err)
	out := make([]wireEvent, 0, n)
	var buf []byte
	for range n {
		var it Item
		buf, it = g.Next(buf[:0])
		var ev wireEvent
		require.NoError(t, json.Unmarshal(buf, &ev), "%s", buf)
		require.Equal(t, it.Kind.String(), ev.Type)
		require.True(t, ev.Timestamp.Equal(it.Time), "timestamp %s vs %s", ev.Timestamp, it.Time)
		out = append(out, ev)
	}
	return out
}

func smallPop() Population {
	p := DefaultPopulation()
	p.Users, p.ActiveSessions, p.Titles = 20_000, 2_000, 500
	return p
}

func TestGeneratorIsReproducibleAndUnique(t *testing.T) {
	a := generate(t, smallPop(), 5000)
	b := generate(t, smallPop(), 5000)
	require.Equal(t, a, b)
	seen := map[string]bool{}
	for _, ev := range a {
		require.False(t, seen[ev.MessageID], "duplicate %s", ev.MessageID)
		seen[ev.MessageID] = true
		require.True(t, ev.UserID != "" || ev.AnonymousID != "")
		require.Equal(t, "@segment/analytics-node", ev.Context.Library.Name)
	}
	other := smallPop()
	other.Seed = 2
	require.NotEqual(t, a[0].MessageID, generate(t, other, 1)[0].MessageID)
}

func TestPopulationDistributions(t *testing.T) {
	pop := smallPop()
	pop.ActiveSessions = 300 // few sessions: simulated time runs long enough to finish titles
	evs := append(generate(t, pop, 60_000), generate(t, smallPop(), 30_000)...)

	users := map[string]Platform{}
	anon := map[string]bool{}
	plays := map[string]int{} // content_asset_id title prefix -> Video Playback Started
	names := map[string]int{}
	heartbeatGaps := 0
	lastPos := map[string]float64{}
	for _, ev := range evs {
		key := ev.UserID + ev.AnonymousID
		anon[key] = ev.UserID == ""
		ua := strings.ToLower(ev.Context.UserAgent)
		switch {
		case strings.Contains(ua, "tv") || strings.Contains(ua, "roku"):
			users[key] = TV
		case strings.Contains(ua, "mobile") || strings.Contains(ua, "iphone"):
			users[key] = Mobile
		default:
			users[key] = Web
		}
		names[ev.Event]++
		if ev.Event == "Video Playback Started" {
			id := ev.Properties["content_asset_id"].(string)
			if i := strings.IndexByte(id, 's'); i > 0 {
				id = id[:i]
			}
			plays[id]++
		}
		if ev.Event == "Video Content Playing" {
			sid := ev.Properties["session_id"].(string)
			pos := ev.Properties["position"].(float64)
			if p, ok := lastPos[sid]; ok && pos-p == 10 {
				heartbeatGaps++
			}
			lastPos[sid] = pos
			require.Contains(t, ev.Properties, "total_length")
			require.Contains(t, ev.Properties, "asset_id")
		}
	}
	share := func(p Platform) float64 {
		n := 0
		for _, v := range users {
			if v == p {
				n++
			}
		}
		return float64(n) / float64(len(users))
	}
	require.InDelta(t, 0.40, share(Web), 0.03)
	require.InDelta(t, 0.35, share(Mobile), 0.03)
	require.InDelta(t, 0.25, share(TV), 0.03)
	nAnon := 0
	for _, a := range anon {
		if a {
			nAnon++
		}
	}
	require.InDelta(t, 0.03, float64(nAnon)/float64(len(anon)), 0.015)

	// Zipf: the most popular title gets far more plays than the median
	// one, and the top 1 % of titles a large share.
	total, top := 0, plays["t1"]
	for _, n := range plays {
		total += n
	}
	require.Greater(t, total, 1000)
	require.Greater(t, float64(top)/float64(total), 0.05, "t1 share")
	top5 := plays["t1"] + plays["t2"] + plays["t3"] + plays["t4"] + plays["t5"]
	require.Greater(t, float64(top5)/float64(total), 0.2)

	for _, name := range []string{"Row Impression", "Title Impression", "Title Clicked", "Search Performed",
		"Video Playback Started", "Video Content Started", "Video Content Playing", "Video Playback Paused",
		"Video Playback Resumed", "Video Playback Seek Started", "Video Playback Buffer Started",
		"Video Content Completed", "Video Playback Completed", "Video Playback Exited"} {
		require.Positive(t, names[name], name)
	}
	require.Greater(t, names["Video Content Playing"], len(evs)/3, "heartbeats dominate")
	require.Greater(t, heartbeatGaps, names["Video Content Playing"]/2, "positions advance by 10 s")
}

func TestPremiereTakesMostPlays(t *testing.T) {
	pop := smallPop()
	pop.PremiereShare = 0.7
	evs := generate(t, pop, 100_000)
	starts, premiere := 0, 0
	for _, ev := range evs {
		if ev.Event == "Video Playback Started" {
			starts++
			if strings.HasPrefix(ev.Properties["content_asset_id"].(string), "t0s") {
				premiere++
			}
		}
	}
	require.Greater(t, starts, 100)
	require.InDelta(t, 0.7, float64(premiere)/float64(starts), 0.08)
}

func TestWallClockStampsNow(t *testing.T) {
	pop := smallPop()
	pop.WallClock = true
	before := time.Now().Add(-time.Millisecond)
	for _, ev := range generate(t, pop, 500) {
		require.WithinRange(t, ev.Timestamp, before, time.Now())
	}
}

func TestBotsNeverPlay(t *testing.T) {
	pop := smallPop()
	pop.BotShare = 1
	for _, ev := range generate(t, pop, 5000) {
		require.Equal(t, botUserAgent, ev.Context.UserAgent)
		require.NotContains(t, ev.Event, "Video")
	}
}

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values []time.Duration
		q      float64
		want   float64 // ms
	}{
		{"single", []time.Duration{5 * time.Millisecond}, 0.5, 5},
		{"median of 1..100ms", seq(100), 0.5, 50},
		{"p99 of 1..100ms", seq(100), 0.99, 99},
		{"p100", seq(100), 1, 100},
		{"sub-16us exact", []time.Duration{3 * time.Microsecond}, 0.5, 0.003},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, v := range tt.values {
				h.observe(v)
			}
			got := quantile(h.snapshot(), tt.q)
			require.InEpsilon(t, tt.want, got, 0.04)
		})
	}
	require.True(t, math.IsNaN(quantile(make([]int64, histBuckets), 0.5)))
	for us := int64(0); us < 1<<30; us = us*9/8 + 1 {
		i := bucketOf(us)
		require.InEpsilon(t, float64(max(us, 1)), max(bucketValue(i), 1), 0.04, "us=%d", us)
	}
}

func seq(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * time.Millisecond
	}
	return out
}
