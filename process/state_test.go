package process

import (
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
)

// step is one event fed to the pure state machine.
type step struct {
	at    time.Duration
	typ   string
	name  string
	props string
}

func run(cfg Config, steps []step) (*event.UserState, []event.Session) {
	u := &event.UserState{}
	t0 := time.Date(2026, 1, 1, 20, 0, 0, 0, time.UTC)
	for _, s := range steps {
		ev := event.Event{Type: s.typ, UserID: "u"}
		if s.typ == event.TypeTrack {
			ev.Event = s.name
		} else {
			ev.Name = s.name
		}
		if s.props != "" {
			ev.Properties = json.RawMessage(s.props)
		}
		var f fields
		f.fromEvent(&ev)
		cl := classify(&f)
		ts := t0.Add(s.at)
		cfg.playback(u, &cl, ts)
		cfg.assign(u, event.Mark{At: ms(ts), Kind: cl.kind, Asset: cl.p.asset(), Name: cl.name, N: 1}, "", "")
	}
	var out []event.Session
	for i := range u.Open {
		out = append(out, cfg.summarize("u", &u.Open[i]))
	}
	return u, out
}

func inRow(u *event.UserState) []string {
	var ids []string
	for _, b := range u.Bookmarks {
		if b.InRow {
			ids = append(ids, b.AssetID)
		}
	}
	return ids
}

const ep1 = `{"asset_id":"e1","program":"S","total_length":1000,"next_episode_asset_id":"e2","position":`

func TestStateMachine(t *testing.T) {
	min := time.Minute
	tests := []struct {
		name     string
		steps    []step
		sessions int
		row      []string
		check    func(t *testing.T, u *event.UserState, s []event.Session)
	}{
		{name: "gap splits sessions", sessions: 2, steps: []step{
			{0, event.TypePage, "home", ""}, {31 * min, event.TypePage, "home", ""}}},
		{name: "late event merges two sessions", sessions: 1, steps: []step{
			{0, event.TypePage, "home", ""}, {40 * min, event.TypePage, "home", ""}, {20 * min, event.TypePage, "late", ""}},
			check: func(t *testing.T, _ *event.UserState, s []event.Session) {
				require.Equal(t, 3, s[0].Events)
				require.Equal(t, []string{"home", "late", "home"}, s[0].ScreensBeforePlay)
			}},
		{name: "out of order play changes clicks to play", sessions: 1, steps: []step{
			{0, event.TypePage, "home", ""}, {60 * time.Second, event.TypeTrack, "Video Playback Started", ep1 + `0}`},
			{30 * time.Second, event.TypeTrack, "Title Clicked", ""}},
			check: func(t *testing.T, _ *event.UserState, s []event.Session) {
				require.Equal(t, 2, s[0].ClicksToPlay)
				require.Equal(t, int64(60000), s[0].TimeToPlayMs)
			}},
		{name: "enters the row after 2 minutes", sessions: 1, row: []string{"e1"}, steps: []step{
			{0, event.TypeTrack, "Video Playback Started", ep1 + `0}`},
			{60 * time.Second, event.TypeTrack, "Video Content Playing", ep1 + `60}`},
			{120 * time.Second, event.TypeTrack, "Video Content Playing", ep1 + `120}`}}},
		{name: "under 2 minutes stays out", sessions: 1, steps: []step{
			{0, event.TypeTrack, "Video Playback Started", ep1 + `0}`},
			{60 * time.Second, event.TypeTrack, "Video Playback Paused", ep1 + `60}`}}},
		{name: "90% completes and advances the series", sessions: 1, row: []string{"e2"}, steps: []step{
			{0, event.TypeTrack, "Video Playback Started", ep1 + `0}`},
			{60 * time.Second, event.TypeTrack, "Video Content Playing", ep1 + `60}`},
			{120 * time.Second, event.TypeTrack, "Video Content Playing", ep1 + `120}`},
			{180 * time.Second, event.TypeTrack, "Video Playback Seek Completed", ep1 + `905}`}},
			check: func(t *testing.T, u *event.UserState, _ []event.Session) {
				require.True(t, u.Bookmarks[findBookmark(u, "e1")].Completed)
				require.Equal(t, "e1", u.Bookmarks[findBookmark(u, "e2")].NextOf)
			}},
		{name: "previews never bookmark", sessions: 1, steps: []step{
			{0, event.TypeTrack, "Video Playback Started", `{"asset_id":"t1","content_type":"preview","position":0}`},
			{150 * time.Second, event.TypeTrack, "Video Content Playing", `{"asset_id":"t1","preview":true,"position":150}`}},
			check: func(t *testing.T, u *event.UserState, s []event.Session) {
				require.Empty(t, u.Bookmarks)
				require.Equal(t, 0, s[0].Plays)
				require.Equal(t, 2, s[0].BrowseCount)
			}},
		{name: "removal tombstones the entry", sessions: 1, steps: []step{
			{0, event.TypeTrack, "Video Playback Started", ep1 + `0}`},
			{60 * time.Second, event.TypeTrack, "Video Content Playing", ep1 + `60}`},
			{180 * time.Second, event.TypeTrack, "Video Content Playing", ep1 + `180}`},
			{200 * time.Second, event.TypeTrack, "Continue Watching Removed", `{"asset_id":"e1"}`}}},
		{name: "heartbeats compact", sessions: 1, row: []string{"e1"}, steps: func() []step {
			var s []step
			for i := range 100 {
				s = append(s, step{time.Duration(i) * 10 * time.Second, event.TypeTrack, "Video Content Playing", ep1 + `1}`})
			}
			return s
		}(), check: func(t *testing.T, u *event.UserState, s []event.Session) {
			require.Len(t, u.Open[0].Marks, 1)
			require.Equal(t, 100, s[0].Events)
			require.Equal(t, int64(990_000), s[0].WatchMs)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			u, s := run(cfg, tc.steps)
			require.Len(t, s, tc.sessions)
			require.Equal(t, tc.row, inRow(u))
			if tc.check != nil {
				tc.check(t, u, s)
			}
		})
	}
}

// TestIdleWatermark: a partition without events advances its watermark by
// processing time, so a 30-minute gap closes without new events; inside a
// synctest bubble the wait costs no wall time.
func TestIdleWatermark(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		a := &applier{cfg: &cfg, now: time.Now()}
		a.ps.Watermark = time.Now().Add(-time.Hour)
		a.ps.MaxEventTime = time.Now()
		end := time.Now()
		u := &event.UserState{Open: []event.OpenSession{{Marks: []event.Mark{{At: ms(end), Kind: kindView, N: 1}}}}}
		time.Sleep(10 * time.Minute)
		a.now = time.Now()
		require.True(t, a.idle())
		require.Greater(t, cfg.closeAt(&u.Open[0]), ms(a.ps.Watermark), "not closed after 10 minutes")
		time.Sleep(30 * time.Minute)
		a.now = time.Now()
		require.True(t, a.idle())
		require.LessOrEqual(t, cfg.closeAt(&u.Open[0]), ms(a.ps.Watermark), "closed once gap+idle+lateness passed")
		require.False(t, a.idle(), "no further advance without time passing")
	})
}
