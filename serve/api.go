package serve

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/httpx"
	"github.com/clickpipe/clickpipe/state"
)

// Reader is the serving state as the API needs it (*state.Store).
type Reader interface {
	View(fn func(txn *badger.Txn) error) error
}

// API is the read-only query API (docs/api.md). Mount it behind
// httpx.RequireBearer. Per-user answers read Badger (one point read and
// one short prefix scan); title stats, top paths and freshness come from
// the live view the sessionizer publishes after each commit.
type API struct {
	store Reader
	live  *state.Live
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	reqs  *prometheus.HistogramVec
	mux   *http.ServeMux
}

// NewAPI returns the query API handler over store and live.
func NewAPI(store Reader, live *state.Live, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*API, error) {
	if live == nil || live.Partitions() == 0 {
		return nil, errors.New("serve: the API needs the live view of at least one partition")
	}
	a := &API{store: store, live: live, cfg: cfg, log: log, now: time.Now, mux: http.NewServeMux(),
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

// freshness is in every response (docs/api.md): as_of is the instant up
// to which every acknowledged event is reflected in the answer (the
// user's partition for per-user answers, all partitions otherwise);
// lag_seconds is now minus the publish time of the oldest acknowledged
// event not yet applied (0 when caught up); watermark is the event-time
// watermark that closes sessions.
type freshness struct {
	AsOf       *time.Time `json:"as_of"`
	LagSeconds float64    `json:"lag_seconds"`
	Watermark  *time.Time `json:"watermark"`
}

func (a *API) freshness(p int) freshness {
	f := a.live.Freshness(p)
	out := freshness{AsOf: ptrTime(f.AppliedThrough.UTC()), Watermark: ptrTime(f.Watermark.UTC())}
	if !f.OldestPending.IsZero() {
		out.LagSeconds = max(0, a.now().Sub(f.OldestPending).Seconds())
	}
	return out
}

// request is what a handler gets: the read transaction, the request, and
// the user's partition (-1 for answers over all partitions).
type request struct {
	txn  *badger.Txn
	r    *http.Request
	user string
	p    int
}

func (a *API) route(pattern string, h func(q *request) (any, error)) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		q := &request{r: r, user: r.PathValue("user_id"), p: -1}
		if q.user != "" {
			q.p = event.Partition(q.user, a.live.Partitions())
			if after := r.URL.Query().Get("after"); after != "" && !a.awaitAfter(w, r, q.p, after) {
				a.reqs.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
				return
			}
		}
		sc := scopeOf(r.Context())
		var out any
		err := a.store.View(func(txn *badger.Txn) error {
			q.txn = txn
			if err := sc.resolve(a, q); err != nil {
				return err
			}
			var err error
			out, err = h(q)
			return err
		})
		var bad badRequest
		var moved movedError
		switch {
		case errors.As(err, &bad):
			httpx.WriteError(w, http.StatusBadRequest, "invalid_parameter", string(bad))
		case errors.As(err, &moved):
			moved.write(w)
		case errors.Is(err, errNotOwner):
			httpx.WriteError(w, http.StatusServiceUnavailable, "not_owner", err.Error())
		case err != nil:
			a.log.Error("query", "route", pattern, "err", err)
			httpx.WriteError(w, http.StatusServiceUnavailable, "state_unavailable", "serving state unavailable")
		default:
			httpx.WriteJSON(w, http.StatusOK, out)
		}
		a.reqs.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
	})
}

// resolve follows an anonymous id that was merged into a user: queries by
// either id answer for the merged user.
func (a *API) resolve(q *request) error {
	if q.user == "" {
		return nil
	}
	_, err := state.Get(q.txn, state.AliasKey(q.p, q.user), func(v []byte) error {
		if i := bytes.IndexByte(v, 0); i > 0 {
			q.user = string(v[:i])
			q.p = event.Partition(q.user, a.live.Partitions())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading alias: %w", err)
	}
	return nil
}

type badRequest string

func (b badRequest) Error() string { return string(b) }

func readUser(q *request) (state.User, bool, error) {
	var u state.User
	found, err := state.Get(q.txn, state.UserKey(q.p, q.user), func(v []byte) error {
		var err error
		u, err = state.DecodeUser(v)
		return err
	})
	if err != nil {
		return u, false, fmt.Errorf("reading user: %w", err)
	}
	return u, found, nil
}

// bookmarks reads the user's bookmarks.
func bookmarks(q *request) ([]state.Bookmark, error) {
	prefix := state.BookmarksPrefix(q.p, q.user)
	it := q.txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 16})
	defer it.Close()
	var out []state.Bookmark
	for it.Rewind(); it.Valid(); it.Next() {
		if err := it.Item().Value(func(v []byte) error {
			b, err := state.DecodeBookmark(v)
			out = append(out, b)
			return err
		}); err != nil {
			return nil, fmt.Errorf("reading bookmark: %w", err)
		}
	}
	return out, nil
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

// row is the Continue Watching row: bookmarks in the row, one per series
// (its most recent), most recent activity first.
func row(bms []state.Bookmark) []state.Bookmark {
	slices.SortStableFunc(bms, func(x, y state.Bookmark) int {
		if x.LastAt != y.LastAt {
			return cmp.Compare(y.LastAt, x.LastAt)
		}
		return cmp.Compare(x.Asset, y.Asset)
	})
	var out []state.Bookmark
	series := map[string]bool{}
	for _, b := range bms {
		if !b.InRow || b.Series != "" && series[b.Series] {
			continue
		}
		if b.Series != "" {
			series[b.Series] = true
		}
		out = append(out, b)
	}
	return out
}

func (a *API) continueWatching(q *request) (any, error) {
	bms, err := bookmarks(q)
	if err != nil {
		return nil, err
	}
	items := []CWItem{}
	for _, b := range row(bms) {
		it := CWItem{AssetID: b.Asset, SeriesID: b.Series, Title: b.Title, Season: int(b.Season), Episode: int(b.Episode),
			PositionSeconds: float64(b.PosMs) / 1000, TotalSeconds: float64(b.TotalMs) / 1000,
			LastWatchedAt: time.UnixMilli(b.LastAt).UTC(), NextEpisodeOf: b.NextOf}
		if b.TotalMs > 0 {
			it.Progress = float64(b.PosMs) / float64(b.TotalMs)
		}
		items = append(items, it)
	}
	return struct {
		UserID string   `json:"user_id"`
		Items  []CWItem `json:"items"`
		freshness
	}{q.user, items, a.freshness(q.p)}, nil
}

// SessionView is one session in the API.
type SessionView struct {
	SessionID         string    `json:"session_id"`
	Version           int       `json:"version"`
	State             string    `json:"state"`
	ClosedBy          string    `json:"closed_by,omitempty"`
	Platform          string    `json:"platform,omitempty"`
	Platforms         []string  `json:"platforms"`
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
	v := SessionView{SessionID: s.SessionID, Version: s.Version, State: "open", ClosedBy: s.ClosedBy,
		Platform: s.Platform, Platforms: s.Platforms,
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
	if v.Platforms == nil {
		v.Platforms = []string{}
	}
	return v
}

func sec(ms int64) float64 { return float64(ms) / 1000 }

func (a *API) sessions(q *request) (any, error) {
	limit := a.cfg.SessionsLimit
	if v := q.r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > a.cfg.MaxSessionsLimit {
			return nil, badRequest(fmt.Sprintf("limit must be an integer in 1..%d", a.cfg.MaxSessionsLimit))
		}
		limit = n
	}
	u, _, err := readUser(q)
	if err != nil {
		return nil, err
	}
	all := slices.Clone(u.Open)
	it := q.txn.NewIterator(badger.IteratorOptions{Prefix: state.SessionsPrefix(q.p, q.user), PrefetchValues: true,
		PrefetchSize: min(limit, 100)})
	defer it.Close()
	for it.Rewind(); it.Valid() && len(all) < limit+len(u.Open); it.Next() {
		if err := it.Item().Value(func(v []byte) error {
			s, err := state.DecodeSession(v)
			all = append(all, s)
			return err
		}); err != nil {
			return nil, fmt.Errorf("reading session: %w", err)
		}
	}
	slices.SortStableFunc(all, func(x, y event.Session) int { return y.Start.Compare(x.Start) })
	out := []SessionView{}
	for i := range all[:min(limit, len(all))] {
		out = append(out, sessionView(&all[i]))
	}
	return struct {
		UserID   string        `json:"user_id"`
		Sessions []SessionView `json:"sessions"`
		freshness
	}{q.user, out, a.freshness(q.p)}, nil
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
	// OpenSessions are sessions not yet closed (not in the counts above).
	OpenSessions int `json:"open_sessions"`
	// Traits are the identify traits (last write by event time wins).
	Traits json.RawMessage `json:"traits"`
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

func (a *API) profile(q *request) (any, error) {
	u, found, err := readUser(q)
	if err != nil {
		return nil, err
	}
	bms, err := bookmarks(q)
	if err != nil {
		return nil, err
	}
	t := func(v int64) time.Time {
		if v == 0 {
			return time.Time{}
		}
		return time.UnixMilli(v).UTC()
	}
	p := Profile{UserID: q.user, Known: found, FirstSeenAt: ptrTime(t(u.FirstSeen)),
		LastSessionAt: ptrTime(t(u.LastSession)), LastPlayAt: ptrTime(t(u.LastPlay)), LateEvents: u.LateEvents,
		ContinueWatchingCount: len(row(bms)), Traits: u.Traits, OpenSessions: len(u.Open)}
	if len(p.Traits) == 0 {
		p.Traits = []byte("{}")
	}
	ref := a.now()
	since := func(v int64) *float64 {
		if v == 0 {
			return nil
		}
		d := max(0, ref.Sub(t(v)).Hours()/24)
		return &d
	}
	p.DaysSinceLastSession, p.DaysSinceLastPlay = since(u.LastSession), since(u.LastPlay)
	today := ref.Unix() / 86400
	var total state.Day
	var prior3w float64
	for _, d := range u.Days {
		age := today - d.Day
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
			p.Sessions7d += int(d.Sessions)
			p.WatchHours7d += float64(d.WatchMs) / 3.6e6
		} else {
			prior3w += float64(d.WatchMs) / 3.6e6
		}
	}
	p.Sessions28d, p.WatchHours28d = int(total.Sessions), float64(total.WatchMs)/3.6e6
	p.WatchTrend = ratio(p.WatchHours7d, prior3w/3)
	p.CompletionRate = ratio(float64(total.Completions), float64(total.Plays))
	p.BrowseWithoutPlayShare = ratio(float64(total.BrowseSessions), float64(total.Sessions))
	p.RebufferRatio = ratio(float64(total.RebufferMs), float64(total.WatchMs+total.RebufferMs))
	return struct {
		Profile
		freshness
	}{p, a.freshness(q.p)}, nil
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

func (a *API) titleStats(q *request) (any, error) {
	asset := q.r.PathValue("asset_id")
	t, _ := a.live.Title(asset)
	s := TitleStats{AssetID: asset, Starts: t.Starts, Completions: t.Completions}
	sec := a.now().Unix()
	now := sec / 60
	var prevViewers int64
	for _, m := range t.Minutes {
		switch m.Minute {
		case now:
			s.ConcurrentViewers = m.Viewers
		case now - 1:
			s.StartsPerMinute, prevViewers = m.Starts, m.Viewers
		}
	}
	// Players send a heartbeat every 10-30 s: early in a minute most
	// viewers have not been heard from yet in it.
	if sec%60 < 30 {
		s.ConcurrentViewers = max(s.ConcurrentViewers, prevViewers)
	}
	m := time.Unix(now*60, 0).UTC()
	s.Minute = &m
	s.WatchHours = float64(t.WatchMs) / 3.6e6
	s.CompletionRate = ratio(float64(s.Completions), float64(s.Starts))
	s.RebufferRatio = ratio(float64(t.RebufferMs), float64(t.WatchMs+t.RebufferMs))
	return struct {
		TitleStats
		freshness
	}{s, a.freshness(-1)}, nil
}

// PathCount is one path and how many closed sessions took it.
type PathCount = state.PathCount

func (a *API) topPaths(q *request) (any, error) {
	out := a.live.TopPaths(a.cfg.TopPaths)
	if out == nil {
		out = []PathCount{}
	}
	return struct {
		Paths []PathCount `json:"paths"`
		freshness
	}{out, a.freshness(-1)}, nil
}

// awaitAfter is read-your-writes: after is ingest's Clickpipe-Position
// header ("partition:sequence" pairs); the query waits, up to
// serve.after_wait, until partition p has applied its sequence (no wait
// when after names other partitions only). It answers 400 or 503
// not_caught_up itself and returns false when the query must not run.
func (a *API) awaitAfter(w http.ResponseWriter, r *http.Request, p int, after string) bool {
	seq, err := afterSeq(after, p, a.live.Partitions())
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "invalid_parameter", err.Error())
		return false
	}
	deadline := time.Now().Add(a.cfg.AfterWait)
	for {
		applied := a.live.Freshness(p).Checkpoint
		if applied >= seq {
			return true
		}
		if time.Now().After(deadline) || r.Context().Err() != nil {
			w.Header().Set("Retry-After", "1")
			httpx.WriteError(w, http.StatusServiceUnavailable, "not_caught_up",
				fmt.Sprintf("the user's partition has applied stream sequence %d, not yet %d; retry", applied, seq))
			return false
		}
		time.Sleep(afterPoll)
	}
}

// afterPoll is how often a read-your-writes wait looks at the checkpoint.
const afterPoll = 5 * time.Millisecond

// afterSeq is the sequence after names for partition p (0: none).
func afterSeq(after string, p, partitions int) (uint64, error) {
	var seq uint64
	for pair := range strings.SplitSeq(after, ",") {
		ps, ss, ok := strings.Cut(strings.TrimSpace(pair), ":")
		pp, perr := strconv.Atoi(ps)
		s, serr := strconv.ParseUint(ss, 10, 64)
		if !ok || perr != nil || serr != nil || pp < 0 || pp >= partitions {
			return 0, fmt.Errorf("after: %q is not a list of partition:sequence pairs (the %s header of an ingest answer)",
				after, "Clickpipe-Position")
		}
		if pp == p {
			seq = max(seq, s)
		}
	}
	return seq, nil
}
