package process

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/state"
)

// userSlot is one user's state in memory: the core record and every
// bookmark, with what the current batch changed.
type userSlot struct {
	key     string
	u       state.User
	bm      map[string]*state.Bookmark
	dirtyBM map[string]bool
	deadBM  []string
	dirty   bool
	gone    bool   // merged into another user: nothing to write
	used    uint64 // the partition's batch number of the last use
}

func (us *userSlot) bookmark(asset string) *state.Bookmark {
	b := us.bm[asset]
	if b == nil {
		b = &state.Bookmark{Asset: asset}
		if us.bm == nil {
			us.bm = map[string]*state.Bookmark{}
		}
		us.bm[asset] = b
	}
	us.touchBM(asset)
	return b
}

func (us *userSlot) touchBM(asset string) {
	if us.dirtyBM == nil {
		us.dirtyBM = map[string]bool{}
	}
	us.dirtyBM[asset] = true
}

// credit is the one clock's output: watch and rebuffer time of a session
// also go to the asset's bookmark and title aggregates.
func (a *applier) credit(us *userSlot) creditFunc {
	return func(asset string, w, r int64) {
		if b := us.bm[asset]; b != nil && !b.Completed && w > 0 {
			b.WatchedMs += w
			us.touchBM(asset)
		}
		t := a.title(asset)
		t.WatchMs += w
		t.RebufferMs += r
	}
}

// place puts an event (as mark m) into the user's sessions: it joins
// every session it reaches (merging them, re-opening a closed one) within
// session_max, or starts a new session. It returns the session's index.
func (a *applier) place(us *userSlot, m state.Mark, platform, source, tease string) int {
	u, c := &us.u, a.cfg
	var hits []int
	for i := range u.Sessions {
		s := &u.Sessions[i]
		if g := c.sessGap(s); m.At >= s.Start-g && m.At <= s.End+g {
			hits = append(hits, i)
		}
	}
	maxMs := c.SessionMax.Milliseconds()
	if len(hits) > 0 {
		first, last := &u.Sessions[hits[0]], &u.Sessions[hits[len(hits)-1]]
		if max(m.At, last.End)-min(m.At, first.Start) <= maxMs {
			for j := len(hits) - 1; j > 0; j-- {
				a.merge(us, hits[0], hits[j])
			}
			a.addMark(us, hits[0], m, platform, tease)
			return hits[0]
		}
		if m.At >= last.Start && max(m.At, last.End)-last.Start <= maxMs {
			i := hits[len(hits)-1]
			a.addMark(us, i, m, platform, tease)
			return i
		}
		for _, i := range hits {
			if s := &u.Sessions[i]; m.At > s.End && !s.Closed {
				a.closeSess(us, i, "max_length")
			}
		}
	}
	s := newSess(us.key, m.At, platform, source)
	i, _ := slices.BinarySearchFunc(u.Sessions, m.At, func(x state.Sess, t int64) int { return cmpInt(x.Start, t) })
	u.Sessions = slices.Insert(u.Sessions, i, s)
	a.addMark(us, i, m, platform, tease)
	if len(u.Sessions) > c.MaxSessions {
		j := a.oldestRetirable(u)
		a.retire(us, j)
		if j < i {
			i--
		}
	}
	return i
}

// oldestRetirable is the session with the earliest end, preferring closed
// ones.
func (a *applier) oldestRetirable(u *state.User) int {
	best := -1
	for i := range u.Sessions {
		s := &u.Sessions[i]
		if best < 0 || s.Closed && !u.Sessions[best].Closed ||
			s.Closed == u.Sessions[best].Closed && s.End < u.Sessions[best].End {
			best = i
		}
	}
	return best
}

// addMark adds m to session i, re-opening it if closed. A mark at or
// before the fold point only counts; a repeated tease of the same title
// counts as an event but not as an interaction.
func (a *applier) addMark(us *userSlot, i int, m state.Mark, platform, tease string) {
	s, c := &us.u.Sessions[i], a.cfg
	if s.Closed {
		s.Closed, s.ClosedBy = false, ""
		a.stats.reopened++
	}
	if m.At < s.Start && s.FoldedUntil == s.Start-1 && m.At > us.u.Frontier {
		// Nothing of s has folded yet and m is after the user's fold
		// point: s now starts at m and m is placed exactly (the older
		// batch of a flush applied after the newer one).
		s.FoldedUntil, s.Clock.Last = m.At-1, m.At
	}
	s.Start, s.End = min(s.Start, m.At), max(s.End, m.At)
	if platform != "" && !slices.Contains(s.Platforms, platform) && len(s.Platforms) < maxPlatforms {
		s.Platforms = append(s.Platforms, platform)
	}
	if m.Kind == kindTease {
		if slices.Contains(s.Path.Teased, tease) {
			m.Kind = kindOther
		} else if len(s.Path.Teased) < c.MaxMarks {
			s.Path.Teased = append(s.Path.Teased, tease)
		}
	}
	count(&s.C, m.Kind)
	if m.Kind == kindOther {
		return
	}
	if m.At <= s.FoldedUntil {
		a.stats.late++
		if isPlayback(m.Kind) && m.At >= s.Clock.Last {
			c.step(&s.Clock, &m, a.credit(us)) // in order after the fold: the clock continues
		}
		return
	}
	j, _ := slices.BinarySearchFunc(s.Marks, m.At+1, func(x state.Mark, t int64) int { return cmpInt(x.At, t) })
	s.Marks = slices.Insert(s.Marks, j, m)
	if over := len(s.Marks) - c.MaxMarks; over > 0 {
		c.fold(s, s.Marks[over-1].At+1, a.credit(us))
	}
}

const maxPlatforms = 8

// count adds an event's order-independent counts.
func count(c *state.Counters, kind uint8) {
	c.Events++
	switch kind {
	case kindView, kindInteract, kindTease:
		c.Browse++
	case kindSearch:
		c.Searches++
	case kindStart:
		c.Plays++
	case kindPause:
		c.Pauses++
	case kindSeekEnd:
		c.Seeks++
	case kindBufStart:
		c.Rebuffers++
	}
}

// merge moves session j (later; never folded, because every mark of it
// is newer than the event that bridges the two) into session i. A
// published j is retracted: its last version names the session it
// merged into.
func (a *applier) merge(us *userSlot, i, j int) {
	u := &us.u
	dst, src := &u.Sessions[i], u.Sessions[j]
	dst.End = max(dst.End, src.End)
	dst.C.Events += src.C.Events
	dst.C.Browse += src.C.Browse
	dst.C.Searches += src.C.Searches
	dst.C.Plays += src.C.Plays
	dst.C.Pauses += src.C.Pauses
	dst.C.Seeks += src.C.Seeks
	dst.C.Rebuffers += src.C.Rebuffers
	dst.C.Completions += src.C.Completions
	for _, p := range src.Platforms {
		if !slices.Contains(dst.Platforms, p) && len(dst.Platforms) < maxPlatforms {
			dst.Platforms = append(dst.Platforms, p)
		}
	}
	for _, t := range src.Path.Teased {
		if !slices.Contains(dst.Path.Teased, t) {
			dst.Path.Teased = append(dst.Path.Teased, t)
		}
	}
	for _, m := range src.Marks {
		if m.At <= dst.FoldedUntil {
			continue // cannot happen (see above); never replay before the fold
		}
		k, _ := slices.BinarySearchFunc(dst.Marks, m.At+1, func(x state.Mark, t int64) int { return cmpInt(x.At, t) })
		dst.Marks = slices.Insert(dst.Marks, k, m)
	}
	if dst.Closed {
		dst.Closed, dst.ClosedBy = false, ""
	}
	if src.Version > 0 {
		a.unpublish(us, &src, dst.ID)
	}
	u.Sessions = slices.Delete(u.Sessions, j, j+1)
	a.stats.merged++
}

// advance records the user's newest capped event time and folds the
// detail of its sessions up to the fold point: detail_window behind the
// newest event time, and no further than the newest event time known
// detail_window of arrival time earlier. The second bound is what places
// a batch exactly when it arrives just after a newer batch of the same
// flush (an SDK sending its batches concurrently); both come from the
// events (receivedAt), so the state does not depend on batch boundaries.
func (a *applier) advance(us *userSlot, capped, arrival int64) {
	u := &us.u
	u.MaxTime = max(u.MaxTime, capped)
	w := a.cfg.DetailWindow.Milliseconds()
	if u.PendingAt != 0 && arrival-u.PendingAt < w {
		return // the pending fold point has not waited detail_window yet
	}
	f := min(u.MaxTime-w, u.PendingMax)
	u.PendingMax, u.PendingAt = u.MaxTime, arrival
	if f <= u.Frontier {
		return
	}
	u.Frontier = f
	cr := a.credit(us)
	for i := range u.Sessions {
		if s := &u.Sessions[i]; len(s.Marks) > 0 && s.Marks[0].At < f {
			a.cfg.fold(s, f, cr)
		}
	}
}

// closeDue closes the user's open sessions that the watermark passed.
func (a *applier) closeDue(us *userSlot) {
	wm := a.ps.Watermark
	for i := range us.u.Sessions {
		if s := &us.u.Sessions[i]; !s.Closed && a.cfg.closeAt(s) <= wm {
			a.closeSess(us, i, "gap")
		}
	}
}

// closeSess closes session i: every mark folds (crediting the watch
// time), and it is published at the end of the batch.
func (a *applier) closeSess(us *userSlot, i int, reason string) {
	s := &us.u.Sessions[i]
	a.cfg.fold(s, s.End+1, a.credit(us))
	s.Closed, s.NeedPub, s.ClosedBy = true, true, reason
	us.dirty = true
}

// retire removes session i from the user's detail, closing and publishing
// it first.
func (a *applier) retire(us *userSlot, i int) {
	if !us.u.Sessions[i].Closed {
		a.closeSess(us, i, "max_sessions")
	}
	if us.u.Sessions[i].NeedPub {
		a.publish(us, &us.u.Sessions[i])
	}
	us.u.Sessions = slices.Delete(us.u.Sessions, i, i+1)
}

// publish writes a closed session's next version: its record, its
// outbox entry for the lake, and its share of the day statistics and top
// paths (replacing what the previous version added).
func (a *applier) publish(us *userSlot, s *state.Sess) {
	s.Version++
	rec := a.cfg.summarize(us.key, s)
	a.replaceShare(us, s, dayShare(&rec), pathOf(&rec))
	if s.PubStart != 0 && s.PubStart != s.Start {
		a.del(state.SessionKey(a.p, us.key, s.PubStart))
	}
	s.PubStart, s.NeedPub = s.Start, false
	a.setTTL(state.SessionKey(a.p, us.key, s.Start), state.EncodeSession(&rec), a.cfg.SessionTTL)
	a.outbox(&rec)
	a.stats.closed++
}

// unpublish retracts a published session merged into another one.
func (a *applier) unpublish(us *userSlot, s *state.Sess, into string) {
	s.Version++
	rec := a.cfg.summarize(us.key, s)
	rec.ClosedBy, rec.MergedInto = "merged", into
	a.replaceShare(us, s, state.Day{}, "")
	a.del(state.SessionKey(a.p, us.key, s.PubStart))
	a.outbox(&rec)
}

func (a *applier) outbox(rec *event.Session) {
	body, err := json.Marshal(rec)
	if err != nil {
		a.fail(err)
		return
	}
	a.set(state.OutboxKey(a.p, rec.SessionID, rec.Version), body)
	a.outboxed++
}

func dayShare(s *event.Session) state.Day {
	d := state.Day{Day: s.Start.Unix() / 86400, Sessions: 1, Plays: int64(s.Plays), Completions: int64(s.Completions),
		WatchMs: s.WatchMs, RebufferMs: s.RebufferMs}
	if s.BrowseAbandon {
		d.BrowseSessions = 1
	}
	return d
}

// churnDays is how many days of statistics a user keeps.
const churnDays = 28

func (a *applier) replaceShare(us *userSlot, s *state.Sess, day state.Day, path string) {
	u := &us.u
	addDay(u, s.Published, -1)
	if day.Sessions > 0 {
		addDay(u, day, 1)
	}
	s.Published = day
	oldest := u.MaxTime/86400000 - churnDays
	u.Days = slices.DeleteFunc(u.Days, func(d state.Day) bool { return d.Day <= oldest || d.Sessions <= 0 })
	if s.PublishedPath != "" {
		if n := a.pt.paths[s.PublishedPath] - 1; n > 0 {
			a.pt.paths[s.PublishedPath] = n
		} else {
			delete(a.pt.paths, s.PublishedPath)
		}
	}
	if path != "" {
		a.pt.paths[path]++
	}
	s.PublishedPath = path
	a.pathsDirty = true
}

func addDay(u *state.User, d state.Day, sign int64) {
	if d.Sessions == 0 {
		return
	}
	i, ok := slices.BinarySearchFunc(u.Days, d.Day, func(x state.Day, t int64) int { return cmpInt(x.Day, t) })
	if !ok {
		if sign < 0 {
			return // that day already left the window
		}
		u.Days = slices.Insert(u.Days, i, state.Day{Day: d.Day})
	}
	x := &u.Days[i]
	x.Sessions += sign * d.Sessions
	x.BrowseSessions += sign * d.BrowseSessions
	x.Plays += sign * d.Plays
	x.Completions += sign * d.Completions
	x.WatchMs += sign * d.WatchMs
	x.RebufferMs += sign * d.RebufferMs
}

// flushUser closes what the watermark passed, publishes closed sessions,
// decides Continue Watching entry, keeps the open-session index and
// writes the user's changed records.
func (a *applier) flushUser(us *userSlot) {
	if us.gone {
		return
	}
	a.closeDue(us)
	u := &us.u
	for i := range u.Sessions {
		if u.Sessions[i].NeedPub {
			a.publish(us, &u.Sessions[i])
		}
	}
	u.Open = u.Open[:0]
	var next int64
	prov := map[string]int64{}
	for i := range u.Sessions {
		s := &u.Sessions[i]
		if s.Closed {
			continue
		}
		u.Open = append(u.Open, a.cfg.summarize(us.key, s))
		a.cfg.provisional(s, prov)
		if at := a.cfg.closeAt(s); next == 0 || at < next {
			next = at
		}
	}
	a.enterRow(us, prov)
	a.trimBookmarks(us)
	a.reindex(us, next)
	a.setTTL(state.UserKey(a.p, us.key), state.EncodeUser(u), a.cfg.UserTTL)
	for asset := range us.dirtyBM {
		if b := us.bm[asset]; b != nil {
			a.setTTL(state.BookmarkKey(a.p, us.key, asset), state.EncodeBookmark(b), a.cfg.UserTTL)
		}
	}
	for _, asset := range us.deadBM {
		a.del(state.BookmarkKey(a.p, us.key, asset))
	}
	clear(us.dirtyBM)
	us.deadBM, us.dirty = us.deadBM[:0], false
}

// reindex keeps the user in the open-session index under a close time no
// later than its next real one.
func (a *applier) reindex(us *userSlot, next int64) {
	u := &us.u
	switch {
	case next == 0 && u.IndexedAt != 0:
		a.del(state.OpenIndexKey(a.p, u.IndexedAt, us.key))
		u.IndexedAt = 0
	case next != 0 && (u.IndexedAt == 0 || u.IndexedAt > next || u.IndexedAt <= a.ps.Watermark):
		if u.IndexedAt != 0 {
			a.del(state.OpenIndexKey(a.p, u.IndexedAt, us.key))
		}
		a.set(state.OpenIndexKey(a.p, next, us.key), nil)
		u.IndexedAt = next
	}
}

// set, setTTL and del write through the batch's transaction; the first
// error sticks and fails the commit.
func (a *applier) set(k, v []byte) { a.setTTL(k, v, 0) }

func (a *applier) setTTL(k, v []byte, ttl time.Duration) {
	if a.err != nil {
		return
	}
	e := badger.NewEntry(k, v)
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	a.err = a.txn.SetEntry(e)
	a.bytes += int64(len(k) + len(v) + 16)
}

func (a *applier) del(k []byte) {
	if a.err == nil {
		a.err = a.txn.Delete(k)
		a.bytes += int64(len(k) + 16)
	}
}

func (a *applier) fail(err error) {
	if a.err == nil {
		a.err = err
	}
}
