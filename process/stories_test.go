package process_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/state"
)

// Viewing stories: one per rule of docs/domain.md, sent through the real
// consumer path (embedded JetStream, Processor, Badger) and read back
// through the query API. Every expectation is computed by hand in the
// story, from the rule, not from the implementation.

// story builds one user's events; at(s) is t0 + s seconds.
type story struct {
	user string
	t0   time.Time
	evs  []event.Event
	n    int
}

func newStory(user string, t0 time.Time) *story { return &story{user: user, t0: t0} }

func (s *story) add(typ, name string, sec float64, props string) *story {
	return s.addAt(typ, name, s.t0.Add(time.Duration(sec*float64(time.Second))), time.Now(), props)
}

func (s *story) addAt(typ, name string, ts, received time.Time, props string) *story {
	s.n++
	e := event.Event{MessageID: fmt.Sprintf("%s-%d", s.user, s.n), Source: "web", Type: typ, UserID: s.user,
		Timestamp: ts.UTC(), ReceivedAt: received.UTC(), Device: event.Device{Platform: "web"}}
	if typ == event.TypeTrack {
		e.Event = name
	} else {
		e.Name = name
	}
	if props != "" {
		e.Properties = json.RawMessage(props)
	}
	s.evs = append(s.evs, e)
	return s
}

func (s *story) track(name string, sec float64, props string) *story {
	return s.add(event.TypeTrack, name, sec, props)
}

// video is the properties of a playback event of asset at pos seconds.
func video(asset string, pos float64, extra string) string {
	p := fmt.Sprintf(`{"content_asset_id":%q,"total_length":3000,"position":%g`, asset, pos)
	if extra != "" {
		p += "," + extra
	}
	return p + "}"
}

type sessionsAnswer struct {
	Sessions []serve.SessionView `json:"sessions"`
}

type cwAnswer struct {
	Items []serve.CWItem `json:"items"`
}

func TestViewingStories(t *testing.T) {
	r := newRig(t)
	r.start()
	defer r.stop()
	past := time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Minute)
	now := time.Now().UTC()
	var all []*story
	send := func(s *story) *story { all = append(all, s); return s }

	// Heartbeats are optional: Started at 0 then Paused at 1,200 s twenty
	// minutes later credits min(1200, 1200 + 5) = 1,200 s, and the title
	// enters Continue Watching (>= 2 min).
	send(newStory("no-heartbeats", past).
		track("Video Playback Started", 0, video("film", 0, "")).
		track("Video Playback Paused", 1200, video("film", 1200, "")))

	// A seek while paused does not start playback: 0-60 s playing (60 s),
	// paused from 60 s; the seek (100-105 s) keeps it paused; resumed at
	// 300 s, playing to 360 s (60 s): 120 s.
	send(newStory("seek-paused", past).
		track("Video Playback Started", 0, video("a1", 0, "")).
		track("Video Content Playing", 30, video("a1", 30, "")).
		track("Video Playback Paused", 60, video("a1", 60, "")).
		track("Video Playback Seek Started", 100, video("a1", 60, "")).
		track("Video Playback Seek Completed", 105, video("a1", 600, "")).
		track("Video Playback Resumed", 300, video("a1", 600, "")).
		track("Video Content Playing", 360, video("a1", 660, "")).
		track("Video Playback Exited", 360, video("a1", 660, "")))

	// Buffering is not watch time: 0-20 s playing (20 s), buffering
	// 20-50 s (rebuffer 30 s), 50-60 s playing (10 s): watch 30 s.
	send(newStory("buffering", past).
		track("Video Playback Started", 0, video("a2", 0, "")).
		track("Video Content Playing", 10, video("a2", 10, "")).
		track("Video Playback Buffer Started", 20, video("a2", 20, "")).
		track("Video Playback Buffer Completed", 50, video("a2", 20, "")).
		track("Video Content Playing", 60, video("a2", 30, "")).
		track("Video Playback Exited", 60, video("a2", 30, "")))

	// Ad time is not content watch time: 0-5 s content (5 s; no playhead
	// on the ad event, so the wall clock), ad 5-35 s (0), content 35-55 s
	// with the playhead 0 -> 20 (20 s): 25 s.
	send(newStory("ads", past).
		track("Video Playback Started", 0, video("a3", 0, "")).
		track("Video Ad Started", 5, `{"content_asset_id":"a3","ad_type":"mid-roll"}`).
		track("Video Ad Playing", 20, `{"content_asset_id":"a3","ad_type":"mid-roll"}`).
		track("Video Ad Completed", 35, `{"content_asset_id":"a3","ad_type":"mid-roll"}`).
		track("Video Content Playing", 45, video("a3", 10, "")).
		track("Video Content Playing", 55, video("a3", 20, "")).
		track("Video Playback Exited", 55, video("a3", 20, "")))

	// content_asset_ids: the asset is its first element when neither
	// content_asset_id nor asset_id is there; 0 -> 180 s at 180 s: 180 s.
	send(newStory("asset-ids", past).
		track("Video Playback Started", 0, `{"content_asset_ids":["x1","x2"],"position":0,"total_length":3000}`).
		track("Video Playback Paused", 180, `{"content_asset_ids":["x1","x2"],"position":180,"total_length":3000}`))

	// Video Content Completed ends a content pod, not the title: at 600 of
	// 3000 s the title stays in Continue Watching and nothing completes.
	send(newStory("pod-end", past).
		track("Video Playback Started", 0, video("a4", 0, "")).
		track("Video Content Playing", 300, video("a4", 300, "")).
		track("Video Content Completed", 600, video("a4", 600, "")).
		track("Video Playback Paused", 610, video("a4", 600, "")))

	// Completion at >= 90 %: 2,700 of 3,000 s completes it; the Playback
	// Completed that follows in the same playback session does not count
	// again: one completion, out of the row.
	send(newStory("completes", past).
		track("Video Playback Started", 0, video("a5", 2500, `"session_id":"pb1"`)).
		track("Video Content Playing", 200, video("a5", 2700, `"session_id":"pb1"`)).
		track("Video Playback Completed", 210, video("a5", 2710, `"session_id":"pb1"`)))

	// Livestreams get no bookmark, but their time is watch time: 200 s.
	send(newStory("live", past).
		track("Video Playback Started", 0, video("live1", 0, `"livestream":true`)).
		track("Video Playback Paused", 200, video("live1", 200, `"livestream":true`)))

	// Series advance from a next-episode property seen on any event of the
	// playback (here only on the start): ep1 completes at 2,800 s and the
	// row shows ep2 at position 0 with its series, season, episode, title.
	send(newStory("series", past).
		track("Video Playback Started", 0, video("ep1", 2600, `"program":"Dark","season":1,"episode":1,"next_episode_asset_id":"ep2","next_episode_title":"Lies"`)).
		track("Video Content Playing", 200, video("ep1", 2800, `"program":"Dark","season":1,"episode":1`)).
		track("Video Playback Paused", 210, video("ep1", 2810, `"program":"Dark","season":1,"episode":1`)))

	// Previews never create bookmarks and count once per title as an
	// interaction; lifecycle and unknown track events are not
	// interactions. Clicks before the first play: Home view, preview of
	// t1 (once), Title Clicked = 3; time to play 50 s.
	send(newStory("path", past).
		track("Application Opened", 0, "").
		add(event.TypeScreen, "Home", 5, "").
		track("Preview Played", 10, `{"content_asset_id":"t1","position":5}`).
		track("Preview Played", 15, `{"content_asset_id":"t1","position":10}`).
		track("Banana Eaten", 20, "").
		track("Application Backgrounded", 25, "").
		track("Title Clicked", 30, `{"content_asset_id":"t1"}`).
		track("Video Playback Started", 50, video("t1", 0, "")).
		track("Video Playback Exited", 60, video("t1", 10, "")))

	// A session on two platforms says so.
	multi := newStory("multi", past).
		add(event.TypeScreen, "Home", 0, "").
		add(event.TypeScreen, "Detail", 10, "")
	multi.evs[1].Device.Platform = "tv"
	send(multi)

	// identify traits: set semantics, the latest event time wins.
	send(newStory("traits", past).
		add(event.TypeIdentify, "", 10, "").
		add(event.TypeIdentify, "", 5, ""))
	tr := all[len(all)-1]
	tr.evs[0].Traits = json.RawMessage(`{"plan":"premium","country":"DE"}`)
	tr.evs[1].Traits = json.RawMessage(`{"plan":"basic","age":30}`)

	// Live traffic now: a viewer playing a title in the current minute.
	send(newStory("viewer-now", now.Add(-30*time.Second)).
		track("Video Playback Started", 0, video("now1", 0, "")).
		track("Video Content Playing", 20, video("now1", 20, "")))

	// One bad clock: a user in the same partition as "on-time" sends an
	// event stamped an hour ahead (received now). It must not move the
	// partition's watermark past the arrival clock, and on-time's events
	// of a minute ago are not late.
	future := newStory("future", now).addAt(event.TypeScreen, "Home", now.Add(time.Hour), now, "")
	send(future)
	ontime := newStory(samePartition("future", "on-time"), now.Add(-time.Minute)).
		add(event.TypeScreen, "Home", 0, "").
		add(event.TypeScreen, "Search", 10, "")
	send(ontime)

	for _, s := range all {
		publish(t, r.b, s.evs)
	}
	api, err := serve.NewAPI(r.store, r.live, serve.DefaultConfig(), quiet, nil)
	require.NoError(t, err)
	waitApplied(t, r)

	// Offline playback, flushed hours later in two requests after the
	// partitions moved on: 0-600 s playing with the playhead 0 -> 600
	// (600 s), paused, 900-1,500 s playing again (600 s): one session
	// of 6 events, 1,200 s, published twice (the second flush re-opened
	// it), in the day statistics.
	offline := newStory("offline", time.Now().Add(-6*time.Hour).UTC()).
		track("Video Playback Started", 0, video("dl1", 0, "")).
		track("Video Content Playing", 300, video("dl1", 300, "")).
		track("Video Playback Paused", 600, video("dl1", 600, "")).
		track("Video Playback Resumed", 900, video("dl1", 600, "")).
		track("Video Content Playing", 1200, video("dl1", 900, "")).
		track("Video Playback Paused", 1500, video("dl1", 1200, ""))
	publish(t, r.b, offline.evs[:3])
	waitUser(t, r, "offline")
	publish(t, r.b, offline.evs[3:])
	waitUser(t, r, "offline")

	// One device's flush of a 5-minute viewing in two batches, the newer
	// applied first (an SDK sends them concurrently; both arrive within a
	// second): the older batch lands behind detail_window of event time
	// but within detail_window of arrival, so it is placed exactly: Started
	// at 0, playing every 30 s to 300 s with the playhead: 300 s, and the
	// title enters Continue Watching.
	flushed := time.Now().UTC()
	reversed := newStory("reversed", flushed.Add(-10*time.Minute))
	for sec := 0; sec <= 300; sec += 30 {
		name := "Video Content Playing"
		if sec == 0 {
			name = "Video Playback Started"
		}
		reversed.addAt(event.TypeTrack, name, reversed.t0.Add(time.Duration(sec)*time.Second), flushed,
			video("rev1", float64(sec), ""))
	}
	reversed.addAt(event.TypeTrack, "Video Playback Paused", reversed.t0.Add(300*time.Second), flushed.Add(time.Second),
		video("rev1", 300, ""))
	publish(t, r.b, reversed.evs[6:])
	waitUser(t, r, "reversed")
	publish(t, r.b, reversed.evs[:6])
	waitUser(t, r, "reversed")

	sessionOf := func(user string) serve.SessionView {
		t.Helper()
		var a sessionsAnswer
		get(t, api, "/v1/users/"+user+"/sessions", &a)
		require.Len(t, a.Sessions, 1, user)
		return a.Sessions[0]
	}
	row := func(user string) []serve.CWItem {
		t.Helper()
		var a cwAnswer
		get(t, api, "/v1/users/"+user+"/continue-watching", &a)
		return a.Items
	}
	titleOf := func(asset string) map[string]any {
		t.Helper()
		var a map[string]any
		get(t, api, "/v1/titles/"+asset+"/stats", &a)
		return a
	}

	t.Run("batches of one flush applied newer first", func(t *testing.T) {
		require.Equal(t, 300.0, sessionOf("reversed").WatchSeconds)
		items := row("reversed")
		require.Len(t, items, 1)
		require.Equal(t, "rev1", items[0].AssetID)
	})
	t.Run("heartbeats optional", func(t *testing.T) {
		require.Equal(t, 1200.0, sessionOf("no-heartbeats").WatchSeconds)
		items := row("no-heartbeats")
		require.Len(t, items, 1)
		require.Equal(t, "film", items[0].AssetID)
		require.Equal(t, 1200.0, items[0].PositionSeconds)
	})
	t.Run("one clock", func(t *testing.T) {
		// The title aggregates credit what the session credits, once the
		// session's detail folds (at the latest when it closes: the idle
		// partition's watermark follows the wall clock).
		eventually(t, 10*time.Second, func() bool {
			return sessionOf("no-heartbeats").State == "closed" && sessionOf("ads").State == "closed"
		})
		require.Equal(t, 1200.0, sessionOf("no-heartbeats").WatchSeconds)
		var p map[string]any
		get(t, api, "/v1/users/no-heartbeats/profile", &p)
		require.InDelta(t, 1200.0/3600, p["watch_hours_28d"], 1e-9, "the churn features too")
		require.InDelta(t, 1200.0/3600, titleOf("film")["watch_hours_total"], 1e-9)
		require.InDelta(t, 25.0/3600, titleOf("a3")["watch_hours_total"], 1e-9)
	})
	t.Run("seek while paused", func(t *testing.T) {
		s := sessionOf("seek-paused")
		require.Equal(t, 120.0, s.WatchSeconds)
		require.Equal(t, 1, s.Seeks)
		require.Equal(t, 240.0, s.PauseSeconds, "paused 60-300 s")
	})
	t.Run("buffering", func(t *testing.T) {
		s := sessionOf("buffering")
		require.Equal(t, 30.0, s.WatchSeconds)
		require.Equal(t, 30.0, s.RebufferSeconds)
		require.Equal(t, 1, s.Rebuffers)
	})
	t.Run("ads", func(t *testing.T) {
		require.Equal(t, 25.0, sessionOf("ads").WatchSeconds)
	})
	t.Run("content_asset_ids", func(t *testing.T) {
		items := row("asset-ids")
		require.Len(t, items, 1)
		require.Equal(t, "x1", items[0].AssetID)
	})
	t.Run("pod end is not completion", func(t *testing.T) {
		require.Equal(t, 0, sessionOf("pod-end").Completions)
		items := row("pod-end")
		require.Len(t, items, 1)
		require.Equal(t, "a4", items[0].AssetID)
	})
	t.Run("completion once", func(t *testing.T) {
		require.Equal(t, 1, sessionOf("completes").Completions)
		require.Empty(t, row("completes"))
		ts := titleOf("a5")
		require.Equal(t, 1.0, ts["completions_total"])
		require.Equal(t, 1.0, ts["completion_rate"], "never above 1")
	})
	t.Run("livestream", func(t *testing.T) {
		require.Empty(t, row("live"))
		require.Equal(t, 200.0, sessionOf("live").WatchSeconds)
		require.Equal(t, 1.0, titleOf("live1")["starts_total"])
	})
	t.Run("series advance", func(t *testing.T) {
		items := row("series")
		require.Len(t, items, 1)
		it := items[0]
		require.Equal(t, "ep2", it.AssetID)
		require.Equal(t, 0.0, it.PositionSeconds)
		require.Equal(t, "Dark", it.SeriesID)
		require.Equal(t, 1, it.Season)
		require.Equal(t, 2, it.Episode)
		require.Equal(t, "Lies", it.Title)
		require.Equal(t, "ep1", it.NextEpisodeOf)
	})
	t.Run("interactions and previews", func(t *testing.T) {
		s := sessionOf("path")
		require.Equal(t, 3, *s.ClicksToPlay)
		require.Equal(t, 50.0, *s.TimeToPlaySeconds)
		require.Equal(t, []string{"Home"}, s.ScreensBeforePlay)
		require.Equal(t, 9, s.Events)
		items := row("path")
		require.Empty(t, items, "10 s of t1 is not enough; the preview never bookmarks")
		require.Equal(t, 1.0, titleOf("t1")["starts_total"], "previews are not starts")
	})
	t.Run("platforms", func(t *testing.T) {
		require.Equal(t, []string{"web", "tv"}, sessionOf("multi").Platforms)
	})
	t.Run("traits", func(t *testing.T) {
		var p map[string]any
		get(t, api, "/v1/users/traits/profile", &p)
		require.Equal(t, map[string]any{"plan": "premium", "country": "DE", "age": 30.0}, p["traits"])
	})
	t.Run("concurrent viewers now", func(t *testing.T) {
		require.Equal(t, 1.0, titleOf("now1")["concurrent_viewers"])
		require.Equal(t, 0.0, titleOf("film")["concurrent_viewers"], "nobody plays it this minute")
	})
	t.Run("future clock", func(t *testing.T) {
		var cw map[string]any
		get(t, api, "/v1/users/"+ontime.user+"/continue-watching", &cw)
		wm, err := time.Parse(time.RFC3339Nano, cw["watermark"].(string))
		require.NoError(t, err)
		require.False(t, wm.After(time.Now().Add(5*time.Second-5*time.Minute)),
			"watermark %s: an event an hour ahead moved it past receivedAt + 5 s - allowed lateness", wm)
		s := sessionOf(ontime.user)
		require.Equal(t, 2, s.Events)
		require.Equal(t, "open", s.State)
	})
	t.Run("offline backfill", func(t *testing.T) {
		eventually(t, 10*time.Second, func() bool { return sessionOf("offline").State == "closed" })
		s := sessionOf("offline")
		require.Equal(t, 6, s.Events)
		require.Equal(t, 1200.0, s.WatchSeconds)
		require.Equal(t, 300.0, s.PauseSeconds)
		require.Equal(t, 2, s.Version, "re-opened by the second flush and published again")
		var p map[string]any
		get(t, api, "/v1/users/offline/profile", &p)
		require.Equal(t, 1.0, p["sessions_28d"])
		require.InDelta(t, 1200.0/3600, p["watch_hours_28d"], 1e-9)
		last, _ := time.Parse(time.RFC3339, p["last_session_at"].(string))
		play, _ := time.Parse(time.RFC3339, p["last_play_at"].(string))
		require.False(t, play.After(last), "last_play_at after last_session_at")
	})
	t.Run("lag is 0 when caught up", func(t *testing.T) {
		var a map[string]any
		get(t, api, "/v1/users/no-heartbeats/continue-watching", &a)
		require.Equal(t, 0.0, a["lag_seconds"])
		asOf, err := time.Parse(time.RFC3339Nano, a["as_of"].(string))
		require.NoError(t, err)
		require.WithinDuration(t, time.Now(), asOf, 5*time.Second, "as_of: everything acknowledged is in")
	})
}

// samePartition is a user id starting with prefix in the partition of
// user (of 4).
func samePartition(user, prefix string) string {
	for i := 0; ; i++ {
		if c := fmt.Sprintf("%s-%d", prefix, i); event.Partition(c, 4) == event.Partition(user, 4) {
			return c
		}
	}
}

// waitUser waits until the partition of user applied the stream's last
// message (publish it last).
func waitUser(t *testing.T, r *rig, user string) {
	t.Helper()
	st, err := r.b.State(context.Background(), buffer.EventsStream)
	require.NoError(t, err)
	eventually(t, 20*time.Second, func() bool {
		var ps state.Checkpoint
		_ = r.store.View(func(txn *badger.Txn) error { return readPS(txn, event.Partition(user, 4), &ps) })
		return ps.LastSeq >= st.LastSeq
	})
}

// waitApplied waits until every partition's checkpoint reached the
// stream's last message of that partition.
func waitApplied(t *testing.T, r *rig) {
	t.Helper()
	eventually(t, 20*time.Second, func() bool {
		st, err := r.b.State(context.Background(), buffer.EventsStream)
		if err != nil {
			return false
		}
		for p := range 4 {
			f := r.live.Freshness(p)
			if !f.OldestPending.IsZero() || f.AppliedThrough.IsZero() {
				return false
			}
		}
		return st.Messages > 0
	})
}

// TestFutureClockCheckerFails is the negative control of the "future
// clock" story: with the cap lifted (future_tolerance of two days) the
// same event moves the watermark an hour ahead, and the story's check
// sees it.
func TestFutureClockCheckerFails(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tolerance time.Duration
		ahead     bool
	}{{"capped", 5 * time.Second, false}, {"uncapped (broken on purpose)", 48 * time.Hour, true}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.cfg.FutureTolerance = tc.tolerance
			r.start()
			defer r.stop()
			now := time.Now().UTC()
			publish(t, r.b, newStory("future", now).addAt(event.TypeScreen, "Home", now.Add(time.Hour), now, "").evs)
			waitUser(t, r, "future")
			var cp state.Checkpoint
			require.NoError(t, r.store.View(func(txn *badger.Txn) error { return readPS(txn, event.Partition("future", 4), &cp) }))
			wm := time.UnixMilli(cp.Watermark).UTC()
			require.Equal(t, tc.ahead, wm.After(time.Now().Add(5*time.Second-5*time.Minute)), "watermark %s", wm)
		})
	}
}

// Identity stitching: an identify carrying both ids merges the anonymous
// history into the user exactly once, whether the two ids share a
// partition or not. Anonymous: Home (0 s), Title Clicked (10 s), Started
// (30 s, playhead 0), Playing (150 s, 120); identify at 160 s; as the
// user: Playing (170 s, 140). One session of 6 events from the
// anonymous start: clicks-to-play 2, time-to-play 30 s, watch 120 + 20 s;
// the title in the user's Continue Watching; queries by the anonymous id
// answer for the user.
func TestIdentityMerge(t *testing.T) {
	r := newRig(t)
	r.start()
	defer r.stop()
	api, err := serve.NewAPI(r.store, r.live, serve.DefaultConfig(), quiet, nil)
	require.NoError(t, err)
	// Live traffic (the merge takes a round trip through the stream; a
	// user session that already closed would only be joined by its totals).
	t0 := time.Now().Add(-5 * time.Minute).UTC().Truncate(time.Second)
	for _, tc := range []struct {
		name, anon, user string
	}{
		{"same partition", "anon-1", samePartition("anon-1", "user-a")},
		{"other partition", "anon-2", otherPartition("anon-2", "user-b")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			anon := newStory(tc.anon, t0).
				add(event.TypeScreen, "Home", 0, "").
				track("Title Clicked", 10, `{"content_asset_id":"m1"}`).
				track("Video Playback Started", 30, video("m1", 0, "")).
				track("Video Content Playing", 150, video("m1", 120, ""))
			for i := range anon.evs {
				anon.evs[i].UserID, anon.evs[i].AnonymousID = "", tc.anon
			}
			user := newStory(tc.user, t0).
				add(event.TypeIdentify, "", 160, "").
				track("Video Content Playing", 170, video("m1", 140, ""))
			user.evs[0].AnonymousID = tc.anon
			publish(t, r.b, anon.evs)
			publish(t, r.b, user.evs)
			for _, id := range []string{tc.user, tc.anon} {
				eventually(t, 10*time.Second, func() bool {
					var a sessionsAnswer
					get(t, api, "/v1/users/"+id+"/sessions", &a)
					return len(a.Sessions) == 1 && a.Sessions[0].Events == 6
				})
				var a sessionsAnswer
				get(t, api, "/v1/users/"+id+"/sessions", &a)
				s := a.Sessions[0]
				require.Equal(t, 2, *s.ClicksToPlay, id)
				require.Equal(t, 30.0, *s.TimeToPlaySeconds, id)
				require.Equal(t, 140.0, s.WatchSeconds, id)
				var cw cwAnswer
				get(t, api, "/v1/users/"+id+"/continue-watching", &cw)
				require.Len(t, cw.Items, 1, id)
				require.Equal(t, "m1", cw.Items[0].AssetID)
				require.Equal(t, 140.0, cw.Items[0].PositionSeconds)
			}
			// The linking event again (an SDK retry past the dedup window
			// has another position, so it is applied): merged once.
			again := newStory(tc.user, t0)
			again.evs = []event.Event{user.evs[0]}
			again.evs[0].MessageID += "-retry"
			publish(t, r.b, again.evs)
			time.Sleep(300 * time.Millisecond)
			waitUser(t, r, tc.user)
			var a sessionsAnswer
			get(t, api, "/v1/users/"+tc.user+"/sessions", &a)
			require.Len(t, a.Sessions, 1)
			require.Equal(t, 7, a.Sessions[0].Events, "the retried identify counts, the history does not move twice")
		})
	}
}

// otherPartition is a user id starting with prefix outside the partition
// of user (of 4).
func otherPartition(user, prefix string) string {
	for i := 0; ; i++ {
		if c := fmt.Sprintf("%s-%d", prefix, i); event.Partition(c, 4) != event.Partition(user, 4) {
			return c
		}
	}
}
