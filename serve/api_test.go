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
	"github.com/clickpipe/clickpipe/serve/servetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newAPI(t testing.TB, st *serve.Store) *serve.API {
	t.Helper()
	api, err := serve.NewAPI(st, servetest.Config(), quiet, nil)
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

func put(t *testing.T, st *serve.Store, key []byte, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, st.Update(func(txn *badger.Txn) error { return txn.Set(key, b) }))
}

func TestUnknownUserIs200WithEmptyLists(t *testing.T) {
	api := newAPI(t, servetest.New(t, servetest.Config(), ""))
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
	st := servetest.New(t, servetest.Config(), "")
	t0 := time.Date(2026, 5, 1, 18, 0, 0, 0, time.UTC)
	for i := range 25 {
		start := t0.Add(time.Duration(i) * time.Hour)
		put(t, st, event.UserSessionKey("u1", start), event.Session{SessionID: "s", UserKey: "u1", Start: start,
			End: start, ClicksToPlay: -1, TimeToPlayMs: -1})
	}
	api := newAPI(t, st)
	max := servetest.Config().MaxSessionsLimit
	tests := []struct {
		query string
		code  int
		n     int
	}{
		{"", http.StatusOK, servetest.Config().SessionsLimit},
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
	st := servetest.New(t, servetest.Config(), "")
	t0 := time.Date(2026, 5, 1, 18, 0, 0, 0, time.UTC)
	newest := time.Now().Add(-100 * time.Second).UTC()
	put(t, st, event.PartitionStateKey(0), event.PartitionState{LastSeq: 9, MaxEventTime: newest, Watermark: t0.Add(2 * time.Hour)})
	put(t, st, event.PartitionStateKey(1), event.PartitionState{LastSeq: 4, MaxEventTime: t0, Watermark: t0.Add(time.Hour)})
	put(t, st, event.UserStateKey("u1"), event.UserState{
		Bookmarks: []event.Bookmark{
			{AssetID: "ep1", SeriesID: "Dark", Season: 1, Episode: 1, PositionMs: 615_000, TotalMs: 3_000_000,
				LastWatchedAt: t0.Add(4 * time.Minute), InRow: true},
			{AssetID: "film", PositionMs: 60_000, TotalMs: 6_000_000, LastWatchedAt: t0.Add(10 * time.Minute), InRow: true},
			{AssetID: "done", PositionMs: 100, LastWatchedAt: t0.Add(20 * time.Minute), Completed: true},
		},
		Days: map[int64]event.DayStats{t0.Unix() / 86400: {Sessions: 2, BrowseSessions: 1, WatchMs: 3_600_000,
			RebufferMs: 400_000, Plays: 2, Completions: 1}},
		FirstSeenAt: t0, LastSessionAt: t0.Add(30 * time.Minute), LastPlayAt: t0.Add(10 * time.Minute)})
	put(t, st, event.UserSessionKey("u1", t0), event.Session{SessionID: "s1", Version: 1, UserKey: "u1", Start: t0,
		End: t0.Add(260 * time.Second), DurationMs: 260_000, Events: 15, BrowseCount: 2, Searches: 1, Plays: 1, Pauses: 1,
		PauseMs: 60_000, Seeks: 1, Rebuffers: 1, RebufferMs: 5_000, WatchMs: 165_000, ClicksToPlay: 3, TimeToPlayMs: 30_000,
		ScreensBeforePlay: []string{"home", "title"}, ClosedBy: "gap"})
	put(t, st, event.UserSessionKey("u1", t0.Add(time.Hour)), event.Session{SessionID: "s2", UserKey: "u1",
		Start: t0.Add(time.Hour), End: t0.Add(time.Hour), Events: 1, BrowseCount: 1, ClicksToPlay: -1, TimeToPlayMs: -1,
		BrowseAbandon: true})
	minute := t0.Unix() / 60
	put(t, st, event.TitleShardKey("ep1", 0), event.TitleShard{Starts: 3, Completions: 1, WatchMs: 7_200_000, RebufferMs: 800_000,
		Minutes: []event.MinuteStats{{Minute: minute - 1, Starts: 2, Viewers: 2}, {Minute: minute, Starts: 1, Viewers: 2}}})
	put(t, st, event.TitleShardKey("ep1", 1), event.TitleShard{Starts: 1,
		Minutes: []event.MinuteStats{{Minute: minute - 1, Starts: 1, Viewers: 1}, {Minute: minute, Viewers: 1}}})
	put(t, st, event.PathShardKey(0), event.PathShard{Paths: map[string]int64{"home > title > play": 3, "home > abandon": 1}})
	put(t, st, event.PathShardKey(1), event.PathShard{Paths: map[string]int64{"home > abandon": 4}})
	api := newAPI(t, st)

	_, cw := call(t, api, "/v1/users/u1/continue-watching")
	require.Equal(t, "2026-05-01T19:00:00Z", cw["as_of"], "as_of is the lowest partition watermark")
	require.InDelta(t, 100, cw["lag_seconds"], 5, "lag: wall clock minus the newest applied event time")
	items := cw["items"].([]any)
	require.Len(t, items, 2, "completed titles are not in the row")
	require.Equal(t, "film", items[0].(map[string]any)["asset_id"], "most recent first")
	require.Equal(t, map[string]any{"asset_id": "ep1", "series_id": "Dark", "season": 1.0, "episode": 1.0,
		"position_seconds": 615.0, "total_seconds": 3000.0, "progress": 0.205,
		"last_watched_at": "2026-05-01T18:04:00Z"}, items[1])

	_, ss := call(t, api, "/v1/users/u1/sessions")
	sessions := ss["sessions"].([]any)
	require.Len(t, sessions, 2)
	open := sessions[0].(map[string]any)
	require.Equal(t, "s2", open["session_id"], "newest first")
	require.Equal(t, "open", open["state"])
	require.Nil(t, open["clicks_to_play"], "null without a play")
	require.Nil(t, open["time_to_play_seconds"])
	require.Equal(t, []any{}, open["screens_before_play"])
	require.Equal(t, true, open["browse_abandon"])
	require.Equal(t, map[string]any{"session_id": "s1", "state": "closed", "closed_by": "gap",
		"start": "2026-05-01T18:00:00Z", "end": "2026-05-01T18:04:20Z", "duration_seconds": 260.0, "events": 15.0,
		"browse_actions": 2.0, "searches": 1.0, "plays": 1.0, "pauses": 1.0, "pause_seconds": 60.0, "seeks": 1.0,
		"rebuffers": 1.0, "rebuffer_seconds": 5.0, "watch_seconds": 165.0, "completions": 0.0, "clicks_to_play": 3.0,
		"time_to_play_seconds": 30.0, "screens_before_play": []any{"home", "title"}, "browse_abandon": false}, sessions[1])

	_, p := call(t, api, "/v1/users/u1/profile")
	require.Equal(t, true, p["known"])
	require.Equal(t, "2026-05-01T18:10:00Z", p["last_play_at"])
	require.InDelta(t, 50.0/60/24, p["days_since_last_play"], 1e-9, "days, relative to as_of")
	require.Equal(t, 2.0, p["sessions_7d"])
	require.Equal(t, 1.0, p["watch_hours_28d"])
	require.Equal(t, 0.5, p["completion_rate"])
	require.Equal(t, 0.5, p["browse_without_play_share"])
	require.InDelta(t, 0.4/4.0, p["rebuffer_ratio"], 1e-9, "rebuffer / (watch + rebuffer)")
	require.Nil(t, p["watch_trend"], "no earlier weeks")
	require.Equal(t, 2.0, p["continue_watching_count"])

	_, ts := call(t, api, "/v1/titles/ep1/stats")
	require.Equal(t, 3.0, ts["concurrent_viewers"], "both shards' newest minute")
	require.Equal(t, 3.0, ts["starts_per_minute"], "the minute before")
	require.Equal(t, 4.0, ts["starts_total"])
	require.Equal(t, 0.25, ts["completion_rate"])
	require.Equal(t, 2.0, ts["watch_hours_total"])
	require.InDelta(t, 0.1, ts["rebuffer_ratio"], 1e-9)
	require.Equal(t, "2026-05-01T18:00:00Z", ts["minute"])

	_, tp := call(t, api, "/v1/paths/top")
	require.Equal(t, []any{
		map[string]any{"path": "home > abandon", "sessions": 5.0},
		map[string]any{"path": "home > title > play", "sessions": 3.0},
	}, tp["paths"], "summed over partitions, most taken first")
}

func TestClosedStoreIs503(t *testing.T) {
	st, err := serve.Open(servetest.Config(), t.TempDir(), quiet, nil)
	require.NoError(t, err)
	api := newAPI(t, st)
	require.NoError(t, st.Close())
	code, v := call(t, api, "/v1/users/u1/continue-watching")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "state_unavailable", v["code"])
}
