package loadgen

import (
	"strconv"
	"time"
)

// session states.
const (
	stOpen uint8 = iota
	stBrowse
	stPlayStart
	stContentStart
	stPlaying
	stResume
	stSeekDone
	stBufferDone
	stEnded
)

const heartbeat = 10 * time.Second

// session is one user's visit: browse, maybe play (possibly several
// episodes), then leave.
type session struct {
	local, index int
	user         user
	next         simTime
	state        uint8
	identified   bool
	browseLeft   int
	t            *title
	season, ep   int
	pos, watchTo int
	playID       uint64
	seekTo       int
}

var (
	pageNames   = []string{"Home", "Browse", "Title Detail", "My List", "Search", "New & Popular"}
	searchTerms = []string{"stranger", "crime", "comedy", "kids", "space", "documentary", "love", "war", "anime", "cooking"}
	rowIDs      = []string{"continue-watching", "trending-now", "top-10", "because-you-watched", "new-releases", "my-list"}
)

// step appends the session's next event (or nothing when the session
// ends silently), schedules the one after, and reports the end.
func (s *session) step(g *Generator, dst []byte) ([]byte, Kind, bool) {
	h := &platformHabits[s.user.platform]
	switch s.state {
	case stOpen:
		if !s.identified && !s.user.anonymous && !s.user.bot && g.r.Float64() < g.pop.IdentifyShare {
			s.identified = true
			s.next = s.next.Add(50 * time.Millisecond)
			return s.identify(g, dst), Identify, false
		}
		s.state = stBrowse
		s.browseLeft = 1 + int(g.r.ExpFloat64()*h.browse)
		s.next = s.next.Add(g.exp(2 * time.Second))
		if h.screens {
			return s.view(g, dst, "Home"), Screen, false
		}
		return s.view(g, dst, "Home"), Page, false
	case stBrowse:
		return s.browse(g, dst, h)
	case stPlayStart:
		s.state = stContentStart
		s.next = s.next.Add(time.Duration(300+g.r.Intn(2500)) * time.Millisecond) // play delay
		return s.video(g, dst, "Video Playback Started"), Track, false
	case stContentStart:
		s.state = stPlaying
		s.next = s.next.Add(heartbeat)
		return s.video(g, dst, "Video Content Started"), Track, false
	case stPlaying:
		return s.playing(g, dst, h)
	case stResume:
		s.state = stPlaying
		s.next = s.next.Add(heartbeat)
		return s.video(g, dst, "Video Playback Resumed"), Track, false
	case stSeekDone:
		s.state, s.pos = stPlaying, s.seekTo
		s.next = s.next.Add(heartbeat)
		return s.video(g, dst, "Video Playback Seek Completed"), Track, false
	case stBufferDone:
		s.state = stPlaying
		s.next = s.next.Add(heartbeat)
		return s.video(g, dst, "Video Playback Buffer Completed"), Track, false
	default: // stEnded: content completed, now playback completed
		return s.afterPlay(g, dst, h, "Video Playback Completed")
	}
}

func (s *session) browse(g *Generator, dst []byte, h *habits) ([]byte, Kind, bool) {
	if s.browseLeft <= 0 {
		if s.user.bot || g.r.Float64() >= h.playProb {
			return dst, Track, true // abandoned: the session just stops
		}
		s.startPlay(g, g.pickTitle(), h)
		return s.click(g, dst, s.t), Track, false
	}
	s.browseLeft--
	s.next = s.next.Add(g.exp(h.gap))
	switch x := g.r.Float64(); {
	case x < 0.40:
		return s.rowImpression(g, dst), Track, false
	case x < 0.65:
		return s.titleImpression(g, dst), Track, false
	case x < 0.80:
		name := pageNames[g.r.Intn(len(pageNames))]
		if h.screens {
			return s.view(g, dst, name), Screen, false
		}
		return s.view(g, dst, name), Page, false
	case x < 0.90:
		return s.search(g, dst), Track, false
	default:
		return s.click(g, dst, g.pickTitle()), Track, false
	}
}

func (s *session) startPlay(g *Generator, t *title, h *habits) {
	s.t, s.state = t, stPlayStart
	s.season, s.ep = 1, 1
	if t.series {
		s.season = 1 + g.r.Intn(t.seasons)
		s.ep = 1 + g.r.Intn(t.eps)
	}
	s.newPlayback(g)
	s.next = s.next.Add(g.exp(time.Second))
}

func (s *session) newPlayback(g *Generator) {
	g.playSeq++
	s.playID = g.playSeq
	s.pos = 0
	switch x := g.r.Float64(); {
	case x < 0.2: // tried it, left within three minutes
		s.watchTo = 10 + g.r.Intn(170)
	case x < 0.55:
		s.watchTo = s.t.length/10 + g.r.Intn(s.t.length*8/10)
	default:
		s.watchTo = s.t.length
	}
}

func (s *session) playing(g *Generator, dst []byte, h *habits) ([]byte, Kind, bool) {
	if s.pos >= s.watchTo {
		s.pos = min(s.watchTo, s.t.length)
		if s.pos >= s.t.length {
			s.state = stEnded
			s.next = s.next.Add(100 * time.Millisecond)
			return s.video(g, dst, "Video Content Completed"), Track, false
		}
		return s.afterPlay(g, dst, h, "Video Playback Exited")
	}
	switch x := g.r.Float64(); {
	case x < h.pause:
		s.state = stResume
		s.next = s.next.Add(g.exp(40 * time.Second))
		return s.video(g, dst, "Video Playback Paused"), Track, false
	case x < h.pause+h.seek:
		s.state = stSeekDone
		s.seekTo = max(0, min(s.t.length-1, s.pos+g.r.Intn(600)-200))
		s.next = s.next.Add(time.Duration(200+g.r.Intn(1500)) * time.Millisecond)
		return s.video(g, dst, "Video Playback Seek Started"), Track, false
	case x < h.pause+h.seek+h.rebuffer:
		s.state = stBufferDone
		s.next = s.next.Add(time.Duration(500+g.r.Intn(6000)) * time.Millisecond)
		return s.video(g, dst, "Video Playback Buffer Started"), Track, false
	}
	s.pos += int(heartbeat / time.Second)
	s.next = s.next.Add(heartbeat)
	return s.video(g, dst, "Video Content Playing"), Track, false
}

// afterPlay ends a playback, then binges the next episode, browses again
// or leaves.
func (s *session) afterPlay(g *Generator, dst []byte, h *habits, name string) ([]byte, Kind, bool) {
	dst = s.video(g, dst, name)
	completed := s.pos >= s.t.length
	switch {
	case completed && s.t.series && g.r.Float64() < h.binge && (s.ep < s.t.eps || s.season < s.t.seasons):
		if s.ep++; s.ep > s.t.eps {
			s.ep, s.season = 1, s.season+1
		}
		s.newPlayback(g)
		s.state = stPlayStart
		s.next = s.next.Add(time.Duration(5+g.r.Intn(15)) * time.Second) // autoplay countdown
	case g.r.Float64() < 0.2:
		s.state = stBrowse
		s.browseLeft = 1 + int(g.r.ExpFloat64()*h.browse/2)
		s.next = s.next.Add(g.exp(h.gap))
	default:
		s.state = stEnded
		s.next = s.next.Add(time.Second)
		return dst, Track, true
	}
	return dst, Track, false
}

// --- encoding: hand-written JSON, every string generated by us is plain
// ASCII without quotes or backslashes, so no escaping is needed.

func (s *session) head(g *Generator, dst []byte, typ, event string) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, typ...)
	if event != "" {
		dst = append(dst, `","event":"`...)
		dst = append(dst, event...)
	}
	dst = append(dst, `","messageId":"`...)
	dst = g.AppendMessageID(dst, g.seq+1)
	if s.user.anonymous {
		dst = append(dst, `","anonymousId":"anon-`...)
	} else {
		dst = append(dst, `","userId":"u`...)
	}
	dst = strconv.AppendInt(dst, int64(s.index), 10)
	dst = append(dst, `","timestamp":"`...)
	dst = g.appendNow(dst)
	dst = append(dst, '"')
	dst = append(dst, g.lib...)
	dst = append(dst, s.user.ua...)
	dst = append(dst, `"}`...)
	return dst
}

func (s *session) identify(g *Generator, dst []byte) []byte {
	dst = s.head(g, dst, "identify", "")
	dst = append(dst, `,"traits":{"plan":"`...)
	dst = append(dst, [...]string{"basic", "standard", "premium"}[s.index%3]...)
	dst = append(dst, `","platform":"`...)
	dst = append(dst, s.user.platform.String()...)
	return append(dst, `"}}`...)
}

func (s *session) view(g *Generator, dst []byte, name string) []byte {
	typ := "page"
	if platformHabits[s.user.platform].screens {
		typ = "screen"
	}
	dst = s.head(g, dst, typ, "")
	dst = append(dst, `,"name":"`...)
	dst = append(dst, name...)
	dst = append(dst, `","properties":{"name":"`...)
	dst = append(dst, name...)
	if typ == "page" {
		dst = append(dst, `","path":"/`...)
		dst = strconv.AppendInt(dst, int64(len(name)), 10)
	}
	return append(dst, `"}}`...)
}

func (s *session) rowImpression(g *Generator, dst []byte) []byte {
	dst = s.head(g, dst, "track", "Row Impression")
	row := g.r.Intn(len(rowIDs))
	dst = append(dst, `,"properties":{"row_id":"`...)
	dst = append(dst, rowIDs[row]...)
	dst = append(dst, `","row_position":`...)
	dst = strconv.AppendInt(dst, int64(row), 10)
	dst = append(dst, `,"request_id":"r`...)
	dst = strconv.AppendUint(dst, g.seq, 36)
	return append(dst, `"}}`...)
}

func (s *session) titleImpression(g *Generator, dst []byte) []byte {
	t := g.pickTitle()
	dst = s.head(g, dst, "track", "Title Impression")
	dst = append(dst, `,"properties":{"title_id":"`...)
	dst = append(dst, t.id...)
	dst = append(dst, `","row_position":`...)
	dst = strconv.AppendInt(dst, int64(g.r.Intn(len(rowIDs))), 10)
	dst = append(dst, `,"column_position":`...)
	dst = strconv.AppendInt(dst, int64(g.r.Intn(12)), 10)
	return append(dst, `}}`...)
}

func (s *session) click(g *Generator, dst []byte, t *title) []byte {
	dst = s.head(g, dst, "track", "Title Clicked")
	dst = append(dst, `,"properties":{"title_id":"`...)
	dst = append(dst, t.id...)
	dst = append(dst, `","row_position":`...)
	dst = strconv.AppendInt(dst, int64(g.r.Intn(len(rowIDs))), 10)
	dst = append(dst, `,"column_position":`...)
	dst = strconv.AppendInt(dst, int64(g.r.Intn(12)), 10)
	return append(dst, `}}`...)
}

func (s *session) search(g *Generator, dst []byte) []byte {
	dst = s.head(g, dst, "track", "Search Performed")
	dst = append(dst, `,"properties":{"query":"`...)
	dst = append(dst, searchTerms[g.r.Intn(len(searchTerms))]...)
	dst = append(dst, `","result_count":`...)
	dst = strconv.AppendInt(dst, int64(g.r.Intn(40)), 10)
	return append(dst, `}}`...)
}

func (s *session) video(g *Generator, dst []byte, event string) []byte {
	t := s.t
	dst = s.head(g, dst, "track", event)
	dst = append(dst, `,"properties":{"session_id":"p`...)
	dst = strconv.AppendUint(dst, uint64(g.shard), 10)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, s.playID, 10)
	dst = append(dst, `","content_asset_id":"`...)
	dst = t.appendAssetID(dst, s.season, s.ep)
	dst = append(dst, `","asset_id":"`...)
	dst = t.appendAssetID(dst, s.season, s.ep)
	dst = append(dst, `","position":`...)
	dst = strconv.AppendInt(dst, int64(s.pos), 10)
	dst = append(dst, `,"total_length":`...)
	dst = strconv.AppendInt(dst, int64(t.length), 10)
	dst = append(dst, `,"title":"`...)
	dst = append(dst, t.name...)
	dst = append(dst, `","genre":"`...)
	dst = append(dst, t.genre...)
	if t.series {
		dst = append(dst, `","program":"`...)
		dst = append(dst, t.name...)
		dst = append(dst, `","season":"`...)
		dst = strconv.AppendInt(dst, int64(s.season), 10)
		dst = append(dst, `","episode":"`...)
		dst = strconv.AppendInt(dst, int64(s.ep), 10)
	}
	if s.state == stSeekDone {
		dst = append(dst, `","seek_position":`...)
		dst = strconv.AppendInt(dst, int64(s.seekTo), 10)
		dst = append(dst, `,"livestream":false}}`...)
		return dst
	}
	return append(dst, `","livestream":false,"quality":"hd","bitrate":4500}}`...)
}
