package serve_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const parts = 2

func newAPI(t testing.TB, st *state.Store) *serve.API {
	t.Helper()
	live, err := state.LoadLive(st, parts)
	require.NoError(t, err)
	api, err := serve.NewAPI(st, live, serve.DefaultConfig(), quiet, nil)
	require.NoError(t, err)
	return api
}

// call GETs path and decodes the body into a generic map, so the test
// sees field names exactly as clients do.
func call(t *testing.T, h http.Handler, path string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var v map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v), rec.Body.String())
	return rec.Code, v
}

func put(t testing.TB, st *state.Store, key, v []byte) {
	t.Helper()
	require.NoError(t, st.Update(func(txn *badger.Txn) error { return txn.Set(key, v) }))
}

func part(user string) int { return event.Partition(user, parts) }

func TestUnknownUserIs200WithEmptyLists(t *testing.T) {
	api := newAPI(t, statetest.New(t, statetest.Options(), ""))
	for path, list := range map[string]string{
		"/v1/users/nobody/continue-watching": "items",
		"/v1/users/nobody/sessions":          "sessions",
		"/v1/paths/top":                      "paths",
	} {
		t.Run(path, func(t *testing.T) {
			code, v := call(t, api, path)
			require.Equal(t, http.StatusOK, code)
			require.Equal(t, []any{}, v[list], "an empty list, not null")
			require.Contains(t, v, "as_of")
			require.Contains(t, v, "lag_seconds")
		})
	}
	code, v := call(t, api, "/v1/users/nobody/profile")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, false, v["known"])
	require.Nil(t, v["last_play_at"])
	require.Nil(t, v["completion_rate"])
	require.Equal(t, 0.0, v["sessions_28d"])
}

func TestSessionsLimit(t *testing.T) {
	st := statetest.New(t, statetest.Options(), "")
	t0 := time.Date(2026, 5, 1, 18, 0, 0, 0, time.UTC)
	for i := range 25 {
		start := t0.Add(time.Duration(i) * time.Hour)
		put(t, st, state.SessionKey(part("u1"), "u1", start.UnixMilli()), state.EncodeSession(&event.Session{
			SessionID: "s", UserKey: "u1", Start: start, End: start, ClicksToPlay: -1, TimeToPlayMs: -1}))
	}
	api := newAPI(t, st)
	max := serve.DefaultConfig().MaxSessionsLimit
	tests := []struct {
		query string
		code  int
		n     int
	}{
		{"", http.StatusOK, serve.DefaultConfig().SessionsLimit},
		{"?limit=1", http.StatusOK, 1},
		{"?limit=" + itoa(max), http.StatusOK, 25},
		{"?limit=0", http.StatusBadRequest, 0},
		{"?limit=-3", http.StatusBadRequest, 0},
		{"?limit=abc", http.StatusBadRequest, 0},
		{"?limit=1.5", http.StatusBadRequest, 0},
		{"?limit=" + itoa(max+1), http.StatusBadRequest, 0},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			code, v := call(t, api, "/v1/users/u1/sessions"+tc.query)
			require.Equal(t, tc.code, code)
			if code != http.StatusOK {
				require.Equal(t, "invalid_parameter", v["code"])
				require.Contains(t, v["error"], "limit")
				return
			}
			require.Len(t, v["sessions"], tc.n)
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestFieldsAndUnits pins the documented field names and units
// (docs/api.md): milliseconds in the store, seconds and ratios in the API.
func TestFieldsAndUnits(t *testing.T) {
	st := statetest.New(t, statetest.Options(), "")
	now := time.Now().UTC()
	t0 := now.Add(-2 * time.Hour).Truncate(time.Hour)
	p := part("u1")
	put(t, st, state.CheckpointKey(0), state.EncodeCheckpoint(&state.Checkpoint{LastSeq: 9, Watermark: t0.Add(time.Hour).UnixMilli()}))
	put(t, st, state.CheckpointKey(1), state.EncodeCheckpoint(&state.Checkpoint{LastSeq: 4, Watermark: t0.Add(2 * time.Hour).UnixMilli()}))
	ms := func(d time.Duration) int64 { return t0.Add(d).UnixMilli() }
	for _, b := range []state.Bookmark{
		{Asset: "ep1", Series: "Dark", Season: 1, Episode: 1, PosMs: 615_000, TotalMs: 3_000_000, LastAt: ms(4 * time.Minute), InRow: true},
		{Asset: "ep0", Series: "Dark", Season: 1, Episode: 0, PosMs: 15_000, TotalMs: 3_000_000, LastAt: ms(3 * time.Minute), InRow: true},
		{Asset: "film", PosMs: 60_000, TotalMs: 6_000_000, LastAt: ms(10 * time.Minute), InRow: true},
		{Asset: "done", PosMs: 100, LastAt: ms(20 * time.Minute), Completed: true},
	} {
		put(t, st, state.BookmarkKey(p, "u1", b.Asset), state.EncodeBookmark(&b))
	}
	put(t, st, state.UserKey(p, "u1"), state.EncodeUser(&state.User{
		FirstSeen: ms(0), LastSession: ms(30 * time.Minute), LastPlay: ms(10 * time.Minute),
		Days: []state.Day{{Day: t0.Unix() / 86400, Sessions: 2, BrowseSessions: 1, WatchMs: 3_600_000, RebufferMs: 400_000,
			Plays: 2, Completions: 1}},
		Open: []event.Session{{SessionID: "s2", UserKey: "u1", Start: t0.Add(time.Hour), End: t0.Add(time.Hour),
			Platform: "web", Platforms: []string{"web", "tv"}, Events: 1, BrowseCount: 1, ClicksToPlay: -1, TimeToPlayMs: -1,
			BrowseAbandon: true}},
		Traits: []byte(`{"plan":"premium"}`)}))
	put(t, st, state.SessionKey(p, "u1", t0.UnixMilli()), state.EncodeSession(&event.Session{SessionID: "s1", Version: 1,
		UserKey: "u1", Start: t0, End: t0.Add(260 * time.Second), DurationMs: 260_000, Events: 15, BrowseCount: 2,
		Searches: 1, Plays: 1, Pauses: 1, PauseMs: 60_000, Seeks: 1, Rebuffers: 1, RebufferMs: 5_000, WatchMs: 165_000,
		ClicksToPlay: 3, TimeToPlayMs: 30_000, ScreensBeforePlay: []string{"home", "title"}, ClosedBy: "gap"}))
	minute := now.Unix() / 60
	put(t, st, state.TitleKey(0, "ep1"), state.EncodeTitle(&state.Title{Starts: 3, Completions: 1, WatchMs: 7_200_000,
		RebufferMs: 800_000, Minutes: []state.Minute{{Minute: minute - 1, Starts: 2, Viewers: 2}, {Minute: minute, Starts: 1, Viewers: 2}}}))
	put(t, st, state.TitleKey(1, "ep1"), state.EncodeTitle(&state.Title{Starts: 1,
		Minutes: []state.Minute{{Minute: minute - 1, Starts: 1, Viewers: 1}, {Minute: minute, Viewers: 1}}}))
	put(t, st, state.PathsKey(0), state.EncodePaths(map[string]int64{"home > title > play": 3, "home > abandon": 1}))
	put(t, st, state.PathsKey(1), state.EncodePaths(map[string]int64{"home > abandon": 4}))
	api := newAPI(t, st)

	_, cw := call(t, api, "/v1/users/u1/continue-watching")
	require.Equal(t, 0.0, cw["lag_seconds"], "nothing pending")
	require.Contains(t, cw, "watermark")
	items := cw["items"].([]any)
	require.Len(t, items, 2, "completed titles are not in the row; a series shows its latest episode only")
	require.Equal(t, "film", items[0].(map[string]any)["asset_id"], "most recent first")
	require.Equal(t, map[string]any{"asset_id": "ep1", "series_id": "Dark", "season": 1.0, "episode": 1.0,
		"position_seconds": 615.0, "total_seconds": 3000.0, "progress": 0.205,
		"last_watched_at": t0.Add(4 * time.Minute).Format(time.RFC3339)}, items[1])

	_, ss := call(t, api, "/v1/users/u1/sessions")
	sessions := ss["sessions"].([]any)
	require.Len(t, sessions, 2)
	open := sessions[0].(map[string]any)
	require.Equal(t, "s2", open["session_id"], "newest first")
	require.Equal(t, "open", open["state"])
	require.Equal(t, []any{"web", "tv"}, open["platforms"], "every platform of the session")
	require.Nil(t, open["clicks_to_play"], "null without a play")
	require.Nil(t, open["time_to_play_seconds"])
	require.Equal(t, []any{}, open["screens_before_play"])
	require.Equal(t, true, open["browse_abandon"])
	require.Equal(t, map[string]any{"session_id": "s1", "version": 1.0, "state": "closed", "closed_by": "gap",
		"platforms": []any{}, "start": t0.Format(time.RFC3339), "end": t0.Add(260 * time.Second).Format(time.RFC3339),
		"duration_seconds": 260.0, "events": 15.0,
		"browse_actions": 2.0, "searches": 1.0, "plays": 1.0, "pauses": 1.0, "pause_seconds": 60.0, "seeks": 1.0,
		"rebuffers": 1.0, "rebuffer_seconds": 5.0, "watch_seconds": 165.0, "completions": 0.0, "clicks_to_play": 3.0,
		"time_to_play_seconds": 30.0, "screens_before_play": []any{"home", "title"}, "browse_abandon": false}, sessions[1])

	_, pr := call(t, api, "/v1/users/u1/profile")
	require.Equal(t, true, pr["known"])
	require.Equal(t, t0.Add(10*time.Minute).Format(time.RFC3339), pr["last_play_at"])
	require.InDelta(t, time.Since(t0.Add(10*time.Minute)).Hours()/24, pr["days_since_last_play"], 1e-3)
	require.Equal(t, 2.0, pr["sessions_7d"])
	require.Equal(t, 1.0, pr["watch_hours_28d"])
	require.Equal(t, 0.5, pr["completion_rate"])
	require.Equal(t, 0.5, pr["browse_without_play_share"])
	require.InDelta(t, 0.4/4.0, pr["rebuffer_ratio"], 1e-9, "rebuffer / (watch + rebuffer)")
	require.Nil(t, pr["watch_trend"], "no earlier weeks")
	require.Equal(t, 2.0, pr["continue_watching_count"])
	require.Equal(t, 1.0, pr["open_sessions"])
	require.Equal(t, map[string]any{"plan": "premium"}, pr["traits"])

	_, ts := call(t, api, "/v1/titles/ep1/stats")
	require.Equal(t, 3.0, ts["concurrent_viewers"], "both partitions' current minute")
	require.Equal(t, 3.0, ts["starts_per_minute"], "the minute before")
	require.Equal(t, 4.0, ts["starts_total"])
	require.Equal(t, 0.25, ts["completion_rate"])
	require.Equal(t, 2.0, ts["watch_hours_total"])
	require.InDelta(t, 0.1, ts["rebuffer_ratio"], 1e-9)

	_, tp := call(t, api, "/v1/paths/top")
	require.Equal(t, []any{
		map[string]any{"path": "home > abandon", "sessions": 5.0},
		map[string]any{"path": "home > title > play", "sessions": 3.0},
	}, tp["paths"], "summed over partitions, most taken first")
}

func TestClosedStoreIs503(t *testing.T) {
	st, err := state.Open(statetest.Options(), t.TempDir(), quiet, nil)
	require.NoError(t, err)
	api := newAPI(t, st)
	require.NoError(t, st.Close())
	code, v := call(t, api, "/v1/users/u1/continue-watching")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "state_unavailable", v["code"])
}
