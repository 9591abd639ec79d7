package process

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// Sessions follow Flink session-window semantics in event time: an event
// joins every open session it is within the gap of (merging them), or
// starts a new one; a session is closed once the watermark passes its end
// plus the gap, after which no on-time event can reach it.

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMs(v int64) time.Time { return time.UnixMilli(v).UTC() }

func sessStart(s *event.OpenSession) int64 { return s.Marks[0].At }

func sessEnd(s *event.OpenSession) int64 {
	end := int64(0)
	for _, m := range s.Marks {
		end = max(end, m.At, m.Until)
	}
	return end
}

// closeAt is when the watermark closes the session.
func (c *Config) closeAt(s *event.OpenSession) int64 {
	return sessEnd(s) + c.gap(s.Platform).Milliseconds()
}

// assign adds mark m (an on-time event) to the user's open sessions.
func (c *Config) assign(u *event.UserState, m event.Mark, platform, source string) {
	var hits []int
	for i := range u.Open {
		g := c.gap(u.Open[i].Platform).Milliseconds()
		if m.At >= sessStart(&u.Open[i])-g && m.At <= sessEnd(&u.Open[i])+g {
			hits = append(hits, i)
		}
	}
	maxMs := c.SessionMax.Milliseconds()
	if len(hits) > 0 {
		lo, hi := min(m.At, sessStart(&u.Open[hits[0]])), max(m.At, sessEnd(&u.Open[hits[len(hits)-1]]))
		if hi-lo <= maxMs {
			merged := u.Open[hits[0]]
			for _, i := range hits[1:] {
				merged.Marks = append(merged.Marks, u.Open[i].Marks...)
			}
			sortMarks(merged.Marks)
			merged.Marks = c.insertMark(merged.Marks, m)
			merged.Closing = ""
			u.Open = slices.Delete(u.Open, hits[0], hits[len(hits)-1]+1)
			u.Open = append(u.Open, merged)
			sortOpen(u.Open)
			return
		}
		last := &u.Open[hits[len(hits)-1]]
		if m.At >= sessStart(last) && max(m.At, sessEnd(last))-sessStart(last) <= maxMs {
			last.Marks = c.insertMark(last.Marks, m)
			return
		}
		for _, i := range hits {
			if m.At > sessEnd(&u.Open[i]) {
				u.Open[i].Closing = "max_length"
			}
		}
	}
	u.Open = append(u.Open, event.OpenSession{Platform: platform, Source: source, Marks: []event.Mark{m}})
	sortOpen(u.Open)
}

func sortMarks(ms []event.Mark) {
	slices.SortStableFunc(ms, func(a, b event.Mark) int { return cmpInt(a.At, b.At) })
}

func sortOpen(s []event.OpenSession) {
	slices.SortStableFunc(s, func(a, b event.OpenSession) int { return cmpInt(sessStart(&a), sessStart(&b)) })
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// insertMark inserts m in time order, folding a heartbeat into the run of
// heartbeats of the same asset right before it (heartbeat compaction).
func (c *Config) insertMark(marks []event.Mark, m event.Mark) []event.Mark {
	i, _ := slices.BinarySearchFunc(marks, m.At+1, func(x event.Mark, t int64) int { return cmpInt(x.At, t) })
	if m.Kind == kindPlaying && i > 0 {
		prev := &marks[i-1]
		if prev.Kind == kindPlaying && prev.Asset == m.Asset && m.At-max(prev.At, prev.Until) <= c.HeartbeatCap.Milliseconds() {
			prev.Until = max(prev.Until, m.At)
			prev.N++
			return marks
		}
	}
	return slices.Insert(marks, i, m)
}

// sessionID is deterministic: the same user and start give the same id.
func sessionID(user string, startMs int64) string {
	h := sha256.Sum256([]byte(user + "\x00" + strconv.FormatInt(startMs, 10)))
	return hex.EncodeToString(h[:12])
}

// summarize recomputes a session's record from its marks.
func (c *Config) summarize(user string, s *event.OpenSession) event.Session {
	out := event.Session{
		UserKey: user, Source: s.Source, Platform: s.Platform,
		Start: fromMs(sessStart(s)), End: fromMs(sessEnd(s)),
		ClicksToPlay: -1, TimeToPlayMs: -1,
	}
	out.SessionID = sessionID(user, sessStart(s))
	out.DurationMs = out.End.Sub(out.Start).Milliseconds()
	w := watchClock{capMs: c.HeartbeatCap.Milliseconds(), pausedAt: -1, bufAt: -1}
	clicks, firstPlay := 0, int64(-1)
	for _, m := range s.Marks {
		out.Events += m.N
		beforePlay := firstPlay < 0
		switch m.Kind {
		case kindView:
			out.BrowseCount++
			if beforePlay {
				clicks++
				if len(out.ScreensBeforePlay) < 10 {
					out.ScreensBeforePlay = append(out.ScreensBeforePlay, m.Name)
				}
			}
		case kindSearch:
			out.Searches++
			if beforePlay {
				clicks++
			}
		case kindBrowse:
			out.BrowseCount++
			if beforePlay {
				clicks++
			}
		case kindStart:
			out.Plays++
			if beforePlay {
				firstPlay = m.At
			}
		case kindPause:
			out.Pauses++
		case kindSeek:
			out.Seeks++
		case kindBufStart:
			out.Rebuffers++
		case kindComplete:
			out.Completions++
		}
		w.step(m)
	}
	out.WatchMs, out.PauseMs, out.RebufferMs = w.watch, w.pause, w.rebuffer
	if firstPlay >= 0 {
		out.ClicksToPlay = clicks
		out.TimeToPlayMs = firstPlay - sessStart(s)
	} else {
		out.BrowseAbandon = out.BrowseCount+out.Searches > 0
	}
	return out
}

// watchClock accumulates playing, paused and buffering time over marks in
// time order.
type watchClock struct {
	capMs                  int64
	playing                bool
	last, pausedAt, bufAt  int64
	watch, pause, rebuffer int64
}

func (w *watchClock) advance(t int64) {
	if w.playing && t > w.last {
		w.watch += min(t-w.last, w.capMs)
	}
	w.last = max(w.last, t)
}

func (w *watchClock) step(m event.Mark) {
	switch m.Kind {
	case kindView, kindSearch, kindBrowse, kindOther, kindRemove:
		return
	}
	w.advance(m.At)
	switch m.Kind {
	case kindStart, kindResume, kindPlaying:
		w.endPause(m.At)
		w.playing = true
	case kindBufEnd:
		w.endBuffer(m.At)
		w.playing = true
	case kindPause:
		w.pausedAt, w.playing = m.At, false
	case kindBufStart:
		w.bufAt, w.playing = m.At, false
	case kindComplete, kindExit:
		w.endPause(m.At)
		w.endBuffer(m.At)
		w.playing = false
	}
	if m.Until > w.last && w.playing { // a compacted run: its gaps are each within the cap
		w.watch += m.Until - w.last
		w.last = m.Until
	}
}

func (w *watchClock) endPause(t int64) {
	if w.pausedAt >= 0 {
		w.pause += t - w.pausedAt
		w.pausedAt = -1
	}
}

func (w *watchClock) endBuffer(t int64) {
	if w.bufAt >= 0 {
		w.rebuffer += t - w.bufAt
		w.bufAt = -1
	}
}

// pathOf is the top-paths key of a closed session: up to five screens
// before the first play, then "play" or "abandon".
func pathOf(s *event.Session) string {
	screens := s.ScreensBeforePlay
	if len(screens) > 5 {
		screens = screens[:5]
	}
	end := "play"
	if s.Plays == 0 {
		end = "abandon"
	}
	return strings.Join(append(slices.Clone(screens), end), " > ")
}
