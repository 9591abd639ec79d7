package process

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/state"
)

// Sessions follow Flink session-window semantics in event time, per user
// (docs/domain.md): an event joins every session of its user it is within
// the gap of (merging them) or starts a new one. A session keeps its
// events in detail (marks, in event-time order) only after its fold
// point; older marks are folded into its watch clock and path state once
// the user's frontier (the user's largest capped event time minus the
// detail_window) passes them, and all of them when it closes, so the
// work of an event does not grow with the session's length. A session
// closes when the partition watermark passes its end plus the gap; the
// check runs when the user's next event is applied and at the end of each
// batch, which is the same thing because the watermark only moves with
// events. A closed session stays with its user (summarised, without
// marks) so that history a device flushes late re-opens it and it is
// published again with the next version, instead of being dropped.

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMs(v int64) time.Time { return time.UnixMilli(v).UTC() }

// sessionID is deterministic: the same user and first event time give the
// same id; it does not change when the session grows.
func sessionID(user string, startMs int64) string {
	h := sha256.Sum256([]byte(user + "\x00" + strconv.FormatInt(startMs, 10)))
	return hex.EncodeToString(h[:12])
}

func (c *Config) gapMs(platform string) int64 { return c.gap(platform).Milliseconds() }

// sessGap is the gap of a session: its first platform's.
func (c *Config) sessGap(s *state.Sess) int64 {
	if len(s.Platforms) > 0 {
		return c.gapMs(s.Platforms[0])
	}
	return c.SessionGap.Milliseconds()
}

func (c *Config) closeAt(s *state.Sess) int64 { return s.End + c.sessGap(s) }

func newSess(user string, at int64, platform, source string) state.Sess {
	s := state.Sess{ID: sessionID(user, at), Start: at, End: at, Source: source, FoldedUntil: at - 1,
		Clock: state.Clock{PausedAt: -1, BufAt: -1, LastPos: -1, Last: at}, Path: state.Path{FirstPlay: -1}}
	if platform != "" {
		s.Platforms = []string{platform}
	}
	return s
}

// creditFunc receives time credited to an asset by the watch clock.
type creditFunc func(asset string, watchMs, rebufferMs int64)

// slackMs is the tolerance added to a playhead advance (DOMAIN.md §6).
const slackMs = 5000

// step advances the watch clock over one mark: between two consecutive
// playback events of a playing title it credits min(wall-clock gap,
// max(0, playhead advance) + 5 s), capped by the session gap; buffering,
// seeking, ad and paused time are not watch time.
func (c *Config) step(k *state.Clock, m *state.Mark, credit creditFunc) {
	if !isPlayback(m.Kind) {
		return
	}
	if gap := m.At - k.Last; gap > 0 && k.Playing && !k.Buffering && !k.Seeking && !k.InAd && k.Asset != "" {
		w := min(gap, c.SessionGap.Milliseconds())
		switch {
		case m.Asset != "" && m.Asset != k.Asset:
			w = min(w, slackMs) // another title started: the old one played at most the slack
		case m.Pos >= 0 && k.LastPos >= 0:
			w = min(w, max(0, m.Pos-k.LastPos)+slackMs)
		}
		k.WatchMs += w
		if credit != nil {
			credit(k.Asset, w, 0)
		}
	}
	k.Last = max(k.Last, m.At)
	if m.Asset != "" && m.Asset != k.Asset {
		k.Asset, k.LastPos, k.Seeking, k.InAd = m.Asset, -1, false, false
		c.endBuffer(k, m.At, credit)
	}
	switch m.Kind {
	case kindStart, kindResume, kindPlaying:
		endPause(k, m.At)
		c.endBuffer(k, m.At, credit)
		k.Playing, k.Seeking, k.InAd = true, false, false
	case kindPause:
		if k.PausedAt < 0 {
			k.PausedAt = m.At
		}
		k.Playing = false
	case kindSeekStart:
		k.Seeking = true
	case kindSeekEnd:
		k.Seeking = false
	case kindBufStart:
		if !k.Buffering {
			k.Buffering, k.BufAt = true, m.At
		}
	case kindBufEnd:
		c.endBuffer(k, m.At, credit)
	case kindAdStart:
		k.InAd = true
	case kindAdEnd:
		k.InAd = false
	case kindExit, kindComplete:
		endPause(k, m.At)
		c.endBuffer(k, m.At, credit)
		k.Playing, k.Seeking, k.InAd = false, false, false
	}
	if m.Pos >= 0 {
		k.LastPos = m.Pos
	}
}

func endPause(k *state.Clock, at int64) {
	if k.PausedAt >= 0 {
		k.PauseMs += max(0, at-k.PausedAt)
		k.PausedAt = -1
	}
}

func (c *Config) endBuffer(k *state.Clock, at int64, credit creditFunc) {
	if k.Buffering {
		r := min(max(0, at-k.BufAt), c.SessionGap.Milliseconds())
		k.RebufferMs += r
		if credit != nil && k.Asset != "" {
			credit(k.Asset, 0, r)
		}
	}
	k.Buffering, k.BufAt = false, -1
}

// stepPath follows the way to the first play: interactions before it are
// clicks, views before it are the screens.
func stepPath(p *state.Path, m *state.Mark, maxScreens int) {
	if p.FirstPlay >= 0 {
		return
	}
	switch {
	case m.Kind == kindStart:
		p.FirstPlay = m.At
	case isInteraction(m.Kind):
		p.Clicks++
		if m.Kind == kindView && len(p.Screens) < maxScreens {
			p.Screens = append(p.Screens, m.Name)
		}
	}
}

// summarize is the session's record now: its counters, and its folded
// clock and path carried over its remaining marks.
func (c *Config) summarize(user string, s *state.Sess) event.Session {
	k, p := s.Clock, s.Path
	p.Screens = slices.Clone(p.Screens)
	for i := range s.Marks {
		c.step(&k, &s.Marks[i], nil)
		stepPath(&p, &s.Marks[i], c.MaxScreens)
	}
	out := event.Session{SessionID: s.ID, Version: int(s.Version), UserKey: user, Source: s.Source,
		Platforms: slices.Clone(s.Platforms), Start: fromMs(s.Start), End: fromMs(s.End),
		DurationMs: s.End - s.Start, Events: int(s.C.Events), BrowseCount: int(s.C.Browse),
		Searches: int(s.C.Searches), Plays: int(s.C.Plays), Pauses: int(s.C.Pauses), PauseMs: k.PauseMs,
		Seeks: int(s.C.Seeks), Rebuffers: int(s.C.Rebuffers), RebufferMs: k.RebufferMs, WatchMs: k.WatchMs,
		Completions: int(s.C.Completions), ClicksToPlay: -1, TimeToPlayMs: -1, ScreensBeforePlay: p.Screens,
		ClosedBy: s.ClosedBy}
	if len(s.Platforms) > 0 {
		out.Platform = s.Platforms[0]
	}
	if p.FirstPlay >= 0 {
		out.ClicksToPlay, out.TimeToPlayMs = int(p.Clicks), p.FirstPlay-s.Start
	} else {
		out.BrowseAbandon = s.C.Browse+s.C.Searches > 0
	}
	return out
}

// provisional is the watch time per asset that the session's unfolded
// marks would credit (Continue Watching must not wait for the fold).
func (c *Config) provisional(s *state.Sess, into map[string]int64) {
	k := s.Clock
	for i := range s.Marks {
		c.step(&k, &s.Marks[i], func(asset string, w, _ int64) { into[asset] += w })
	}
}

func cmpInt(a, b int64) int { return cmp.Compare(a, b) }

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

// fold folds the marks of s before upto into its clock and path, crediting
// watch and rebuffer time through credit.
func (c *Config) fold(s *state.Sess, upto int64, credit creditFunc) {
	n := 0
	for n < len(s.Marks) && s.Marks[n].At < upto {
		m := &s.Marks[n]
		c.step(&s.Clock, m, credit)
		stepPath(&s.Path, m, c.MaxScreens)
		s.FoldedUntil = max(s.FoldedUntil, m.At)
		n++
	}
	if n > 0 {
		s.Marks = slices.Delete(s.Marks, 0, n)
	}
}
