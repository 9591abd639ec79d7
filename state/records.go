package state

import (
	"maps"
	"slices"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// Times inside records are Unix milliseconds (0 = unset).

// Checkpoint is a partition's position: the last applied stream sequence
// and its event-time watermark, committed with every batch.
type Checkpoint struct {
	LastSeq uint64
	// MaxEventTime is the largest capped event time applied (an event
	// counts at most receivedAt + future tolerance).
	MaxEventTime int64
	// Watermark is MaxEventTime minus the allowed lateness, advanced by
	// the wall clock while the partition is idle. It closes sessions.
	Watermark   int64
	CommittedAt int64
}

// EncodeCheckpoint and DecodeCheckpoint are the record codec.
func EncodeCheckpoint(c *Checkpoint) []byte {
	e := newEnc(32)
	e.u(c.LastSeq)
	e.i(c.MaxEventTime)
	e.i(c.Watermark)
	e.i(c.CommittedAt)
	return e.b
}

func DecodeCheckpoint(b []byte) (Checkpoint, error) {
	d := newDec(b)
	c := Checkpoint{LastSeq: d.u(), MaxEventTime: d.i(), Watermark: d.i(), CommittedAt: d.i()}
	return c, d.done()
}

// Day is one user's activity on one UTC day (the day a session started).
type Day struct {
	Day                                                 int64 // Unix days
	Sessions, BrowseSessions, Plays, Completions, Later int64
	WatchMs, RebufferMs                                 int64
}

func (x *Day) enc(e *enc) {
	e.i(x.Day)
	e.i(x.Sessions)
	e.i(x.BrowseSessions)
	e.i(x.Plays)
	e.i(x.Completions)
	e.i(x.Later)
	e.i(x.WatchMs)
	e.i(x.RebufferMs)
}

func (x *Day) dec(d *dec) {
	*x = Day{Day: d.i(), Sessions: d.i(), BrowseSessions: d.i(), Plays: d.i(), Completions: d.i(), Later: d.i(),
		WatchMs: d.i(), RebufferMs: d.i()}
}

// Mark is one event of a session kept in detail: only events newer than
// the session's fold point are kept this way.
type Mark struct {
	At    int64
	Kind  uint8
	Asset string
	// Pos is the playhead in ms, -1 when the event carried none.
	Pos int64
	// Name is a view's screen name, or the playback session id of a
	// playback event.
	Name string
}

// Clock is the watch clock of a session after its folded marks: which
// asset plays and since when, and the time credited so far.
type Clock struct {
	Asset                             string
	Playing, Buffering, Seeking, InAd bool
	Last, LastPos                     int64
	PausedAt, BufAt                   int64 // -1 when not paused / buffering
	WatchMs, PauseMs, RebufferMs      int64
}

func (c *Clock) enc(e *enc) {
	e.s(c.Asset)
	e.bo(c.Playing)
	e.bo(c.Buffering)
	e.bo(c.Seeking)
	e.bo(c.InAd)
	e.i(c.Last)
	e.i(c.LastPos)
	e.i(c.PausedAt)
	e.i(c.BufAt)
	e.i(c.WatchMs)
	e.i(c.PauseMs)
	e.i(c.RebufferMs)
}

func (c *Clock) dec(d *dec) {
	*c = Clock{Asset: d.s(), Playing: d.bo(), Buffering: d.bo(), Seeking: d.bo(), InAd: d.bo(), Last: d.i(),
		LastPos: d.i(), PausedAt: d.i(), BufAt: d.i(), WatchMs: d.i(), PauseMs: d.i(), RebufferMs: d.i()}
}

// Path is what a session's folded marks say about the way to the first
// play.
type Path struct {
	Clicks    int64
	FirstPlay int64 // -1 until the first play
	Screens   []string
	// Teased are the assets whose preview/hover already counted as an
	// interaction in this session.
	Teased []string
}

func (p *Path) enc(e *enc) {
	e.i(p.Clicks)
	e.i(p.FirstPlay)
	encStrings(e, p.Screens)
	encStrings(e, p.Teased)
}

func (p *Path) dec(d *dec) {
	*p = Path{Clicks: d.i(), FirstPlay: d.i(), Screens: decStrings(d), Teased: decStrings(d)}
}

func encStrings(e *enc, ss []string) {
	e.u(uint64(len(ss)))
	for _, s := range ss {
		e.s(s)
	}
}

func decStrings(d *dec) []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.s()
	}
	return out
}

// Counters are a session's order-independent counts.
type Counters struct {
	Events, Browse, Searches, Plays, Pauses, Seeks, Rebuffers, Completions int64
}

// Sess is a session kept in detail: open, or closed but still reachable
// by an on-time event of its user (then a late event re-opens it and it
// is published again with the next version).
type Sess struct {
	ID         string
	Start, End int64
	// Version is the last published version (0: never published);
	// PubStart the start of that version (its record's key).
	Version, PubStart int64
	// Closed sessions take no marks; NeedPub: closed since the last
	// publication, to be published at the end of the batch.
	Closed, NeedPub bool
	ClosedBy        string
	Source          string
	Platforms       []string
	C               Counters
	// FoldedUntil: marks at or before it are folded into Clock and Path.
	FoldedUntil int64
	Clock       Clock
	Path        Path
	Marks       []Mark
	// Published is what the last published version added to the user's
	// day statistics and the paths, so a re-publication can replace it.
	Published     Day
	PublishedPath string
}

func (s *Sess) enc(e *enc) {
	e.s(s.ID)
	e.i(s.Start)
	e.i(s.End)
	e.i(s.Version)
	e.i(s.PubStart)
	e.bo(s.Closed)
	e.bo(s.NeedPub)
	e.s(s.ClosedBy)
	e.s(s.Source)
	encStrings(e, s.Platforms)
	for _, v := range []int64{s.C.Events, s.C.Browse, s.C.Searches, s.C.Plays, s.C.Pauses, s.C.Seeks, s.C.Rebuffers, s.C.Completions} {
		e.i(v)
	}
	e.i(s.FoldedUntil)
	s.Clock.enc(e)
	s.Path.enc(e)
	e.u(uint64(len(s.Marks)))
	for i := range s.Marks {
		m := &s.Marks[i]
		e.i(m.At)
		e.b = append(e.b, m.Kind)
		e.s(m.Asset)
		e.i(m.Pos)
		e.s(m.Name)
	}
	s.Published.enc(e)
	e.s(s.PublishedPath)
}

func (s *Sess) dec(d *dec) {
	*s = Sess{ID: d.s(), Start: d.i(), End: d.i(), Version: d.i(), PubStart: d.i(), Closed: d.bo(), NeedPub: d.bo(),
		ClosedBy: d.s(), Source: d.s(), Platforms: decStrings(d)}
	s.C = Counters{Events: d.i(), Browse: d.i(), Searches: d.i(), Plays: d.i(), Pauses: d.i(), Seeks: d.i(),
		Rebuffers: d.i(), Completions: d.i()}
	s.FoldedUntil = d.i()
	s.Clock.dec(d)
	s.Path.dec(d)
	if n := d.count(); n > 0 {
		s.Marks = make([]Mark, n)
		for i := range s.Marks {
			m := &s.Marks[i]
			m.At = d.i()
			if d.err == nil && len(d.b) > 0 {
				m.Kind = d.b[0]
				d.b = d.b[1:]
			} else {
				d.fail()
			}
			m.Asset, m.Pos, m.Name = d.s(), d.i(), d.s()
		}
	}
	s.Published.dec(d)
	s.PublishedPath = d.s()
}

// User is a user's core record: profile times, the sessions kept in
// detail with the summaries the API shows for the open ones, up to 28
// days of statistics, and identify traits.
type User struct {
	FirstSeen, LastSession, LastPlay int64
	// MaxTime is the user's largest capped event time. Frontier is the
	// fold point applied to its sessions: an event before it is late for
	// this user (its counts still apply to the session it falls in).
	// Folding trails both the event time and the arrival time by
	// detail_window: PendingMax is MaxTime as it stood when an event
	// received at PendingAt (ms) was applied, and the fold may reach it
	// only once an event arrives detail_window after PendingAt
	// (docs/domain.md, "Sessions").
	MaxTime, Frontier     int64
	PendingMax, PendingAt int64
	LateEvents            int64
	// IndexedAt is the close time under which the user sits in the
	// partition's open-session index (0: not indexed).
	IndexedAt int64
	Sessions  []Sess
	// Open are the API views of the sessions not yet closed.
	Open []event.Session
	Days []Day
	// Traits is the JSON object of identify traits; TraitTimes the event
	// time each trait was last set (last write by event time wins).
	Traits     []byte
	TraitTimes map[string]int64
	// MergedFrom are anonymous ids merged into this user.
	MergedFrom []string
}

// EncodeUser and DecodeUser are the record codec.
func EncodeUser(u *User) []byte {
	e := newEnc(256)
	e.i(u.FirstSeen)
	e.i(u.LastSession)
	e.i(u.LastPlay)
	e.i(u.MaxTime)
	e.i(u.Frontier)
	e.i(u.LateEvents)
	e.i(u.IndexedAt)
	e.u(uint64(len(u.Sessions)))
	for i := range u.Sessions {
		u.Sessions[i].enc(e)
	}
	e.u(uint64(len(u.Open)))
	for i := range u.Open {
		encSession(e, &u.Open[i])
	}
	e.u(uint64(len(u.Days)))
	for i := range u.Days {
		u.Days[i].enc(e)
	}
	e.by(u.Traits)
	keys := slices.Sorted(maps.Keys(u.TraitTimes))
	e.u(uint64(len(keys)))
	for _, k := range keys {
		e.s(k)
		e.i(u.TraitTimes[k])
	}
	encStrings(e, u.MergedFrom)
	// A trailer: records written before it decode with zeros.
	e.i(u.PendingMax)
	e.i(u.PendingAt)
	return e.b
}

func DecodeUser(b []byte) (User, error) {
	d := newDec(b)
	u := User{FirstSeen: d.i(), LastSession: d.i(), LastPlay: d.i(), MaxTime: d.i(), Frontier: d.i(),
		LateEvents: d.i(), IndexedAt: d.i()}
	if n := d.count(); n > 0 {
		u.Sessions = make([]Sess, n)
		for i := range u.Sessions {
			u.Sessions[i].dec(d)
		}
	}
	if n := d.count(); n > 0 {
		u.Open = make([]event.Session, n)
		for i := range u.Open {
			decSession(d, &u.Open[i])
		}
	}
	if n := d.count(); n > 0 {
		u.Days = make([]Day, n)
		for i := range u.Days {
			u.Days[i].dec(d)
		}
	}
	u.Traits = d.by()
	if n := d.count(); n > 0 {
		u.TraitTimes = make(map[string]int64, n)
		for range n {
			k := d.s()
			u.TraitTimes[k] = d.i()
		}
	}
	u.MergedFrom = decStrings(d)
	if d.more() {
		u.PendingMax, u.PendingAt = d.i(), d.i()
	}
	return u, d.done()
}

// Bookmark is a user's playback state of one asset; those with InRow set
// form the Continue Watching row.
type Bookmark struct {
	Asset, Series, Title string
	Season, Episode      int64
	PosMs, TotalMs       int64
	// WatchedMs is the watch time credited since the (re)start.
	WatchedMs int64
	LastAt    int64
	InRow     bool
	Completed bool
	RemovedAt int64
	// NextOf is set on an entry created by a series advance.
	NextOf string
	// Next is the episode after this one, as a playback event named it.
	NextAsset, NextTitle    string
	NextSeason, NextEpisode int64
	// CompletedIn is the playback session that completed it (at most one
	// completion per playback session).
	CompletedIn string
	Live        bool
	// Playing and CountedMinute drive the concurrent-viewers count.
	Playing       bool
	CountedMinute int64
}

// EncodeBookmark and DecodeBookmark are the record codec.
func EncodeBookmark(b *Bookmark) []byte {
	e := newEnc(64 + len(b.Asset) + len(b.Title))
	e.s(b.Asset)
	e.s(b.Series)
	e.s(b.Title)
	e.i(b.Season)
	e.i(b.Episode)
	e.i(b.PosMs)
	e.i(b.TotalMs)
	e.i(b.WatchedMs)
	e.i(b.LastAt)
	e.bo(b.InRow)
	e.bo(b.Completed)
	e.i(b.RemovedAt)
	e.s(b.NextOf)
	e.s(b.NextAsset)
	e.s(b.NextTitle)
	e.i(b.NextSeason)
	e.i(b.NextEpisode)
	e.s(b.CompletedIn)
	e.bo(b.Live)
	e.bo(b.Playing)
	e.i(b.CountedMinute)
	return e.b
}

func DecodeBookmark(b []byte) (Bookmark, error) {
	d := newDec(b)
	x := Bookmark{Asset: d.s(), Series: d.s(), Title: d.s(), Season: d.i(), Episode: d.i(), PosMs: d.i(),
		TotalMs: d.i(), WatchedMs: d.i(), LastAt: d.i(), InRow: d.bo(), Completed: d.bo(), RemovedAt: d.i(),
		NextOf: d.s(), NextAsset: d.s(), NextTitle: d.s(), NextSeason: d.i(), NextEpisode: d.i(), CompletedIn: d.s(), Live: d.bo(), Playing: d.bo(), CountedMinute: d.i()}
	return x, d.done()
}

// TitleMinutes is how many event-time minutes a title share keeps.
const TitleMinutes = 10

// Minute counts one event-time minute (Unix minutes) of an asset.
type Minute struct{ Minute, Starts, Viewers int64 }

// Title is one partition's share of an asset's aggregates.
type Title struct {
	Starts, Completions, WatchMs, RebufferMs int64
	Minutes                                  []Minute
}

// EncodeTitle and DecodeTitle are the record codec.
func EncodeTitle(t *Title) []byte {
	e := newEnc(32 + 12*len(t.Minutes))
	e.i(t.Starts)
	e.i(t.Completions)
	e.i(t.WatchMs)
	e.i(t.RebufferMs)
	e.u(uint64(len(t.Minutes)))
	for _, m := range t.Minutes {
		e.i(m.Minute)
		e.i(m.Starts)
		e.i(m.Viewers)
	}
	return e.b
}

func DecodeTitle(b []byte) (Title, error) {
	d := newDec(b)
	t := Title{Starts: d.i(), Completions: d.i(), WatchMs: d.i(), RebufferMs: d.i()}
	if n := d.count(); n > 0 {
		t.Minutes = make([]Minute, n)
		for i := range t.Minutes {
			t.Minutes[i] = Minute{Minute: d.i(), Starts: d.i(), Viewers: d.i()}
		}
	}
	return t, d.done()
}

// EncodePaths and DecodePaths are the codec of a partition's top-paths
// share (path -> closed sessions), written in path order.
func EncodePaths(p map[string]int64) []byte {
	e := newEnc(16 * (len(p) + 1))
	keys := slices.Sorted(maps.Keys(p))
	e.u(uint64(len(keys)))
	for _, k := range keys {
		e.s(k)
		e.i(p[k])
	}
	return e.b
}

func DecodePaths(b []byte) (map[string]int64, error) {
	d := newDec(b)
	n := d.count()
	out := make(map[string]int64, n)
	for range n {
		k := d.s()
		out[k] = d.i()
	}
	return out, d.done()
}

// EncodeSession and DecodeSession are the codec of a closed session
// record (the fields of the lake's session row).
func EncodeSession(s *event.Session) []byte {
	e := newEnc(128)
	encSession(e, s)
	return e.b
}

func DecodeSession(b []byte) (event.Session, error) {
	d := newDec(b)
	var s event.Session
	decSession(d, &s)
	return s, d.done()
}

func encSession(e *enc, s *event.Session) {
	e.s(s.SessionID)
	e.i(int64(s.Version))
	e.s(s.UserKey)
	e.s(s.Source)
	e.s(s.Platform)
	encStrings(e, s.Platforms)
	e.i(s.Start.UnixMilli())
	e.i(s.End.UnixMilli())
	for _, v := range []int64{s.DurationMs, int64(s.Events), int64(s.BrowseCount), int64(s.Searches), int64(s.Plays),
		int64(s.Pauses), s.PauseMs, int64(s.Seeks), int64(s.Rebuffers), s.RebufferMs, s.WatchMs, int64(s.Completions),
		int64(s.ClicksToPlay), s.TimeToPlayMs} {
		e.i(v)
	}
	encStrings(e, s.ScreensBeforePlay)
	e.bo(s.BrowseAbandon)
	e.s(s.ClosedBy)
	e.s(s.MergedInto)
}

func decSession(d *dec, s *event.Session) {
	*s = event.Session{SessionID: d.s(), Version: int(d.i()), UserKey: d.s(), Source: d.s(), Platform: d.s(),
		Platforms: decStrings(d), Start: time.UnixMilli(d.i()).UTC(), End: time.UnixMilli(d.i()).UTC()}
	s.DurationMs, s.Events, s.BrowseCount, s.Searches = d.i(), int(d.i()), int(d.i()), int(d.i())
	s.Plays, s.Pauses, s.PauseMs, s.Seeks = int(d.i()), int(d.i()), d.i(), int(d.i())
	s.Rebuffers, s.RebufferMs, s.WatchMs, s.Completions = int(d.i()), d.i(), d.i(), int(d.i())
	s.ClicksToPlay, s.TimeToPlayMs = int(d.i()), d.i()
	s.ScreensBeforePlay = decStrings(d)
	s.BrowseAbandon = d.bo()
	s.ClosedBy = d.s()
	s.MergedInto = d.s()
}

// EncodeDups and DecodeDups are the codec of a message's duplicate line
// indexes, ascending.
func EncodeDups(idx []uint32) []byte {
	e := newEnc(1 + 2*len(idx))
	e.u(uint64(len(idx)))
	for _, i := range idx {
		e.u(uint64(i))
	}
	return e.b
}

func DecodeDups(b []byte) ([]uint32, error) {
	d := newDec(b)
	n := d.count()
	out := make([]uint32, 0, n)
	for range n {
		out = append(out, uint32(d.u()))
	}
	return out, d.done()
}

// Control is a control message awaiting publication to a partition's
// subject, with the Nats-Msg-Id that makes its re-publication idempotent.
type Control struct {
	Target int
	Kind   string
	MsgID  string
	Body   []byte
}

// EncodeControl and DecodeControl are the codec of the control outbox.
func EncodeControl(c *Control) []byte {
	e := newEnc(16 + len(c.Body))
	e.u(uint64(c.Target))
	e.s(c.Kind)
	e.s(c.MsgID)
	e.by(c.Body)
	return e.b
}

func DecodeControl(b []byte) (Control, error) {
	d := newDec(b)
	c := Control{Target: int(d.u()), Kind: d.s(), MsgID: d.s(), Body: d.by()}
	return c, d.done()
}

// MergeState is what an anonymous id hands to the user it merges into:
// its core record, its bookmarks and its closed session records.
type MergeState struct {
	Anon, User, MergeID string
	Core                User
	Bookmarks           []Bookmark
	Closed              []event.Session
}

// EncodeMergeState and DecodeMergeState are its codec (the body of a
// merge-state control message).
func EncodeMergeState(m *MergeState) []byte {
	e := newEnc(512)
	e.s(m.Anon)
	e.s(m.User)
	e.s(m.MergeID)
	e.by(EncodeUser(&m.Core))
	e.u(uint64(len(m.Bookmarks)))
	for i := range m.Bookmarks {
		e.by(EncodeBookmark(&m.Bookmarks[i]))
	}
	e.u(uint64(len(m.Closed)))
	for i := range m.Closed {
		e.by(EncodeSession(&m.Closed[i]))
	}
	return e.b
}

func DecodeMergeState(b []byte) (MergeState, error) {
	d := newDec(b)
	m := MergeState{Anon: d.s(), User: d.s(), MergeID: d.s()}
	var err error
	if m.Core, err = DecodeUser(d.raw()); err != nil && d.err == nil {
		return m, err
	}
	for range d.count() {
		bm, err := DecodeBookmark(d.raw())
		if err != nil {
			return m, err
		}
		m.Bookmarks = append(m.Bookmarks, bm)
	}
	for range d.count() {
		s, err := DecodeSession(d.raw())
		if err != nil {
			return m, err
		}
		m.Closed = append(m.Closed, s)
	}
	return m, d.done()
}

// Forgotten reports a forget control message applied in one partition
// (docs/format/buffer.md): which regulation, how many of its ids had
// state there and how many keys were deleted. No id is kept.
type Forgotten struct {
	Regulation     string
	Found, Removed int64
	AppliedAt      int64
}

// EncodeForgotten and DecodeForgotten are its codec.
func EncodeForgotten(f *Forgotten) []byte {
	e := newEnc(32 + len(f.Regulation))
	e.s(f.Regulation)
	e.i(f.Found)
	e.i(f.Removed)
	e.i(f.AppliedAt)
	return e.b
}

func DecodeForgotten(b []byte) (Forgotten, error) {
	d := newDec(b)
	f := Forgotten{Regulation: d.s(), Found: d.i(), Removed: d.i(), AppliedAt: d.i()}
	return f, d.done()
}
