package serve

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/httpx"
)

// API is the read-only query API (docs/api.md). Mount it behind
// httpx.RequireBearer.
type API struct {
	store *Store
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	reqs  *prometheus.HistogramVec
	mux   *http.ServeMux
}

// NewAPI returns the query API handler over store.
func NewAPI(store *Store, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*API, error) {
	a := &API{store: store, cfg: cfg, log: log, now: time.Now, mux: http.NewServeMux(),
		reqs: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "clickpipe_serve_request_duration_seconds",
			Help: "Query API latency by route.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14)}, []string{"route"})}
	if reg != nil {
		if err := reg.Register(a.reqs); err != nil {
			return nil, fmt.Errorf("registering query metrics: %w", err)
		}
	}
	a.route("GET /v1/users/{user_id}/continue-watching", a.continueWatching)
	a.route("GET /v1/users/{user_id}/sessions", a.sessions)
	a.route("GET /v1/users/{user_id}/profile", a.profile)
	a.route("GET /v1/titles/{asset_id}/stats", a.titleStats)
	a.route("GET /v1/paths/top", a.topPaths)
	return a, nil
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// freshness is in every response.
type freshness struct {
	AsOf       time.Time `json:"as_of"`
	LagSeconds float64   `json:"lag_seconds"`
}

func (a *API) route(pattern string, h func(txn *badger.Txn, r *http.Request, f freshness) (any, error)) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var out any
		err := a.store.View(func(txn *badger.Txn) error {
			f, err := a.freshness(txn)
			if err != nil {
				return err
			}
			out, err = h(txn, r, f)
			return err
		})
		var bad badRequest
		switch {
		case errors.As(err, &bad):
			httpx.WriteError(w, http.StatusBadRequest, "invalid_parameter", string(bad))
		case err != nil:
			a.log.Error("query", "path", r.URL.Path, "err", err)
			httpx.WriteError(w, http.StatusServiceUnavailable, "state_unavailable", "serving state unavailable")
		default:
			httpx.WriteJSON(w, http.StatusOK, out)
		}
		a.reqs.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
	})
}

type badRequest string

func (b badRequest) Error() string { return string(b) }

// freshness: as_of is the lowest partition watermark (state is complete up
// to it); lag_seconds is wall clock minus the newest applied event time.
func (a *API) freshness(txn *badger.Txn) (freshness, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{event.StateMetaPrefix, 0}, PrefetchValues: true})
	defer it.Close()
	var f freshness
	var newest time.Time
	for it.Rewind(); it.Valid(); it.Next() {
		var ps event.PartitionState
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &ps) }); err != nil {
			return f, fmt.Errorf("reading partition state: %w", err)
		}
		if f.AsOf.IsZero() || ps.Watermark.Before(f.AsOf) {
			f.AsOf = ps.Watermark
		}
		if ps.MaxEventTime.After(newest) {
			newest = ps.MaxEventTime
		}
	}
	if !newest.IsZero() {
		f.LagSeconds = max(0, a.now().Sub(newest).Seconds())
	}
	f.AsOf = f.AsOf.UTC()
	return f, nil
}

func readJSON(txn *badger.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

// CWItem is one Continue Watching entry.
type CWItem struct {
	AssetID         string    `json:"asset_id"`
	SeriesID        string    `json:"series_id,omitempty"`
	Title           string    `json:"title,omitempty"`
	Season          int       `json:"season,omitempty"`
	Episode         int       `json:"episode,omitempty"`
	PositionSeconds float64   `json:"position_seconds"`
	TotalSeconds    float64   `json:"total_seconds,omitempty"`
	Progress        float64   `json:"progress"`
	LastWatchedAt   time.Time `json:"last_watched_at"`
	NextEpisodeOf   string    `json:"next_episode_of,omitempty"`
}

func (a *API) continueWatching(txn *badger.Txn, r *http.Request, f freshness) (any, error) {
	// Only the bookmarks: the open sessions' marks are most of a user's
	// record and would be decoded for nothing.
	var u struct {
		Bookmarks []event.Bookmark `json:"bookmarks"`
	}
	if err := readJSON(txn, event.UserStateKey(r.PathValue("user_id")), &u); err != nil {
		return nil, err
	}
	items := []CWItem{}
	for _, b := range u.Bookmarks {
		if !b.InRow {
			continue
		}
		it := CWItem{AssetID: b.AssetID, SeriesID: b.SeriesID, Title: b.Title, Season: b.Season, Episode: b.Episode,
			PositionSeconds: float64(b.PositionMs) / 1000, TotalSeconds: float64(b.TotalMs) / 1000,
			LastWatchedAt: b.LastWatchedAt, NextEpisodeOf: b.NextOf}
		if b.TotalMs > 0 {
			it.Progress = float64(b.PositionMs) / float64(b.TotalMs)
		}
		items = append(items, it)
	}
	slices.SortStableFunc(items, func(x, y CWItem) int { return y.LastWatchedAt.Compare(x.LastWatchedAt) })
	return struct {
		UserID string   `json:"user_id"`
		Items  []CWItem `json:"items"`
		freshness
	}{r.PathValue("user_id"), items, f}, nil
}

// SessionView is one session in the API.
type SessionView struct {
	SessionID         string    `json:"session_id"`
	State             string    `json:"state"`
	ClosedBy          string    `json:"closed_by,omitempty"`
	Platform          string    `json:"platform,omitempty"`
	Start             time.Time `json:"start"`
	End               time.Time `json:"end"`
	DurationSeconds   float64   `json:"duration_seconds"`
	Events            int       `json:"events"`
	BrowseActions     int       `json:"browse_actions"`
	Searches          int       `json:"searches"`
	Plays             int       `json:"plays"`
	Pauses            int       `json:"pauses"`
	PauseSeconds      float64   `json:"pause_seconds"`
	Seeks             int       `json:"seeks"`
	Rebuffers         int       `json:"rebuffers"`
	RebufferSeconds   float64   `json:"rebuffer_seconds"`
	WatchSeconds      float64   `json:"watch_seconds"`
	Completions       int       `json:"completions"`
	ClicksToPlay      *int      `json:"clicks_to_play"`
	TimeToPlaySeconds *float64  `json:"time_to_play_seconds"`
	ScreensBeforePlay []string  `json:"screens_before_play"`
	BrowseAbandon     bool      `json:"browse_abandon"`
}

func sessionView(s *event.Session) SessionView {
	v := SessionView{SessionID: s.SessionID, State: "open", ClosedBy: s.ClosedBy, Platform: s.Platform,
		Start: s.Start, End: s.End, DurationSeconds: sec(s.DurationMs), Events: s.Events, BrowseActions: s.BrowseCount,
		Searches: s.Searches, Plays: s.Plays, Pauses: s.Pauses, PauseSeconds: sec(s.PauseMs), Seeks: s.Seeks,
		Rebuffers: s.Rebuffers, RebufferSeconds: sec(s.RebufferMs), WatchSeconds: sec(s.WatchMs),
		Completions: s.Completions, ScreensBeforePlay: s.ScreensBeforePlay, BrowseAbandon: s.BrowseAbandon}
	if s.ClosedBy != "" {
		v.State = "closed"
	}
	if s.ClicksToPlay >= 0 {
		c, t := s.ClicksToPlay, sec(s.TimeToPlayMs)
		v.ClicksToPlay, v.TimeToPlaySeconds = &c, &t
	}
	if v.ScreensBeforePlay == nil {
		v.ScreensBeforePlay = []string{}
	}
	return v
}

func sec(ms int64) float64 { return float64(ms) / 1000 }

func (a *API) sessions(txn *badger.Txn, r *http.Request, f freshness) (any, error) {
	limit := a.cfg.SessionsLimit
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n <= 0 || n > a.cfg.MaxSessionsLimit {
			return nil, badRequest(fmt.Sprintf("limit must be an integer in 1..%d", a.cfg.MaxSessionsLimit))
		}
		limit = n
	}
	user := r.PathValue("user_id")
	it := txn.NewIterator(badger.IteratorOptions{Prefix: event.UserSessionsPrefix(user), PrefetchValues: true, PrefetchSize: limit})
	defer it.Close()
	out := []SessionView{}
	for it.Rewind(); it.Valid() && len(out) < limit; it.Next() {
		var s event.Session
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &s) }); err != nil {
			return nil, fmt.Errorf("reading session: %w", err)
		}
		out = append(out, sessionView(&s))
	}
	return struct {
		UserID   string        `json:"user_id"`
		Sessions []SessionView `json:"sessions"`
		freshness
	}{user, out, f}, nil
}

// Profile holds the churn features (DOMAIN.md section 5), over closed
// sessions.
type Profile struct {
	UserID               string     `json:"user_id"`
	Known                bool       `json:"known"`
	FirstSeenAt          *time.Time `json:"first_seen_at"`
	LastSessionAt        *time.Time `json:"last_session_at"`
	LastPlayAt           *time.Time `json:"last_play_at"`
	DaysSinceLastSession *float64   `json:"days_since_last_session"`
	DaysSinceLastPlay    *float64   `json:"days_since_last_play"`
	Sessions7d           int        `json:"sessions_7d"`
	Sessions28d          int        `json:"sessions_28d"`
	WatchHours7d         float64    `json:"watch_hours_7d"`
	WatchHours28d        float64    `json:"watch_hours_28d"`
	// WatchTrend is this week's watch hours over the average of the three
	// weeks before (1 = steady, < 1 declining); null without history.
	WatchTrend             *float64 `json:"watch_trend"`
	CompletionRate         *float64 `json:"completion_rate"`
	BrowseWithoutPlayShare *float64 `json:"browse_without_play_share"`
	RebufferRatio          *float64 `json:"rebuffer_ratio"`
	LateEvents             int64    `json:"late_events"`
	ContinueWatchingCount  int      `json:"continue_watching_count"`
}

func ratio(a, b float64) *float64 {
	if b <= 0 {
		return nil
	}
	r := a / b
	return &r
}

func ptrTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (a *API) profile(txn *badger.Txn, r *http.Request, f freshness) (any, error) {
	user := r.PathValue("user_id")
	var u event.UserState
	if err := readJSON(txn, event.UserStateKey(user), &u); err != nil {
		return nil, err
	}
	p := Profile{UserID: user, Known: !u.FirstSeenAt.IsZero(), FirstSeenAt: ptrTime(u.FirstSeenAt),
		LastSessionAt: ptrTime(u.LastSessionAt), LastPlayAt: ptrTime(u.LastPlayAt), LateEvents: u.LateEvents}
	ref := f.AsOf
	if ref.IsZero() {
		ref = a.now()
	}
	since := func(t time.Time) *float64 {
		if t.IsZero() {
			return nil
		}
		d := max(0, ref.Sub(t).Hours()/24)
		return &d
	}
	p.DaysSinceLastSession, p.DaysSinceLastPlay = since(u.LastSessionAt), since(u.LastPlayAt)
	today := ref.Unix() / 86400
	var total event.DayStats
	var prior3w float64
	for day, d := range u.Days {
		age := today - day
		if age < 0 || age >= 28 {
			continue
		}
		total.Sessions += d.Sessions
		total.BrowseSessions += d.BrowseSessions
		total.WatchMs += d.WatchMs
		total.RebufferMs += d.RebufferMs
		total.Plays += d.Plays
		total.Completions += d.Completions
		if age < 7 {
			p.Sessions7d += d.Sessions
			p.WatchHours7d += float64(d.WatchMs) / 3.6e6
		} else {
			prior3w += float64(d.WatchMs) / 3.6e6
		}
	}
	p.Sessions28d, p.WatchHours28d = total.Sessions, float64(total.WatchMs)/3.6e6
	p.WatchTrend = ratio(p.WatchHours7d, prior3w/3)
	p.CompletionRate = ratio(float64(total.Completions), float64(total.Plays))
	p.BrowseWithoutPlayShare = ratio(float64(total.BrowseSessions), float64(total.Sessions))
	p.RebufferRatio = ratio(float64(total.RebufferMs), float64(total.WatchMs+total.RebufferMs))
	for _, b := range u.Bookmarks {
		if b.InRow {
			p.ContinueWatchingCount++
		}
	}
	return struct {
		Profile
		freshness
	}{p, f}, nil
}

// TitleStats are an asset's aggregates over all partitions.
type TitleStats struct {
	AssetID           string     `json:"asset_id"`
	ConcurrentViewers int64      `json:"concurrent_viewers"`
	StartsPerMinute   int64      `json:"starts_per_minute"`
	Starts            int64      `json:"starts_total"`
	Completions       int64      `json:"completions_total"`
	CompletionRate    *float64   `json:"completion_rate"`
	WatchHours        float64    `json:"watch_hours_total"`
	RebufferRatio     *float64   `json:"rebuffer_ratio"`
	Minute            *time.Time `json:"minute"`
}

func (a *API) titleStats(txn *badger.Txn, r *http.Request, f freshness) (any, error) {
	asset := r.PathValue("asset_id")
	it := txn.NewIterator(badger.IteratorOptions{Prefix: event.TitlePrefix(asset), PrefetchValues: true})
	defer it.Close()
	var shards []event.TitleShard
	var latest int64
	for it.Rewind(); it.Valid(); it.Next() {
		var t event.TitleShard
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &t) }); err != nil {
			return nil, fmt.Errorf("reading title shard: %w", err)
		}
		if n := len(t.Minutes); n > 0 {
			latest = max(latest, t.Minutes[n-1].Minute)
		}
		shards = append(shards, t)
	}
	s := TitleStats{AssetID: asset}
	var watch, rebuf int64
	for _, t := range shards {
		s.Starts += t.Starts
		s.Completions += t.Completions
		watch += t.WatchMs
		rebuf += t.RebufferMs
		for _, m := range t.Minutes {
			if m.Minute == latest {
				s.ConcurrentViewers += m.Viewers
			}
			if m.Minute == latest-1 {
				s.StartsPerMinute += m.Starts
			}
		}
	}
	if latest > 0 {
		m := time.Unix(latest*60, 0).UTC()
		s.Minute = &m
	}
	s.WatchHours = float64(watch) / 3.6e6
	s.CompletionRate = ratio(float64(s.Completions), float64(s.Starts))
	s.RebufferRatio = ratio(float64(rebuf), float64(watch+rebuf))
	return struct {
		TitleStats
		freshness
	}{s, f}, nil
}

// PathCount is one path and how many closed sessions took it.
type PathCount struct {
	Path     string `json:"path"`
	Sessions int64  `json:"sessions"`
}

func (a *API) topPaths(txn *badger.Txn, r *http.Request, f freshness) (any, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{event.StatePathPrefix, 0}, PrefetchValues: true})
	defer it.Close()
	sum := map[string]int64{}
	for it.Rewind(); it.Valid(); it.Next() {
		var ps event.PathShard
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &ps) }); err != nil {
			return nil, fmt.Errorf("reading paths: %w", err)
		}
		for p, n := range ps.Paths {
			sum[p] += n
		}
	}
	out := []PathCount{}
	for _, p := range slices.Sorted(maps.Keys(sum)) {
		out = append(out, PathCount{p, sum[p]})
	}
	slices.SortStableFunc(out, func(x, y PathCount) int { return cmp.Compare(y.Sessions, x.Sessions) })
	if len(out) > a.cfg.TopPaths {
		out = out[:a.cfg.TopPaths]
	}
	return struct {
		Paths []PathCount `json:"paths"`
		freshness
	}{out, f}, nil
}
