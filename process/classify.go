package process

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/clickpipe/clickpipe/event"
)

// Mark kinds: what one event means to a session (docs/domain.md has the
// table and the reasons).
const (
	kindOther     uint8 = iota // lifecycle, identify/alias/group, unknown track events
	kindView                   // page or screen view: an interaction with a screen name
	kindSearch                 // search performed: an interaction
	kindInteract               // title click, detail view, search-result click, impression batch
	kindTease                  // hover / preview / trailer / more info: once per title per session
	kindStart                  // Video Playback Started
	kindPlaying                // Video Content Started / Playing, heartbeats
	kindPause                  // Video Playback Paused
	kindResume                 // Video Playback Resumed
	kindSeekStart              // Video Playback Seek Started
	kindSeekEnd                // Video Playback Seek Completed
	kindBufStart               // Video Playback Buffer Started
	kindBufEnd                 // Video Playback Buffer Completed
	kindExit                   // Video Playback Interrupted / Exited
	kindComplete               // Video Playback Completed
	kindPodEnd                 // Video Content Completed: a content pod ended, not the title
	kindAdStart                // Video Ad Started / Ad Break Started
	kindAdEnd                  // Video Ad Completed / Ad Break Completed
	kindRemove                 // Continue Watching Removed
)

// isPlayback reports kinds that carry a playhead and drive the watch clock.
func isPlayback(k uint8) bool { return k >= kindStart && k <= kindAdEnd }

// isInteraction reports kinds counted as clicks before the first play.
func isInteraction(k uint8) bool { return k >= kindView && k <= kindTease }

// playbackKinds maps Segment Video Spec and Snowplow media event names.
var playbackKinds = map[string]uint8{
	"video playback started": kindStart, "play": kindStart,
	"video content started": kindPlaying, "video content playing": kindPlaying, "ping": kindPlaying,
	"video playback paused": kindPause, "pause": kindPause,
	"video playback resumed":      kindResume,
	"video playback seek started": kindSeekStart, "seek_start": kindSeekStart,
	"video playback seek completed": kindSeekEnd, "seek_end": kindSeekEnd,
	"video playback buffer started": kindBufStart, "buffer_start": kindBufStart,
	"video playback buffer completed": kindBufEnd, "buffer_end": kindBufEnd,
	"video playback interrupted": kindExit, "video playback exited": kindExit,
	"video playback completed": kindComplete, "end": kindComplete,
	"video content completed": kindPodEnd,
	"video ad started":        kindAdStart, "video ad break started": kindAdStart, "ad_start": kindAdStart, "ad_break_start": kindAdStart,
	"video ad completed": kindAdEnd, "video ad break completed": kindAdEnd, "video ad skipped": kindAdEnd,
	"ad_complete": kindAdEnd, "ad_skip": kindAdEnd, "ad_break_end": kindAdEnd,
	"continue watching removed": kindRemove,
}

// Interaction classes of process.interactions.
const (
	ClassCount        = "count"
	ClassOncePerTitle = "once_per_title"
	ClassIgnore       = "ignore"
)

// DefaultInteractions is the classification of track events that are not
// playback events (DOMAIN.md §6, "Interactions"); names are matched
// lower-cased. Unknown track events are ignored unless configured.
func DefaultInteractions() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"title clicked", "title selected", "product clicked", "detail viewed",
		"title detail viewed", "search result clicked", "row impression", "row impressions",
		"title impression", "title impressions", "impressions", "row scrolled", "category clicked",
		"genre selected", "added to my list", "rated"} {
		m[n] = ClassCount
	}
	for _, n := range []string{"search performed", "products searched", "search"} {
		m[n] = ClassCount
	}
	for _, n := range []string{"title hovered", "preview played", "preview started", "trailer played",
		"trailer started", "more info clicked", "more info viewed"} {
		m[n] = ClassOncePerTitle
	}
	for _, n := range []string{"application opened", "application backgrounded", "application foregrounded",
		"application installed", "application updated", "application crashed", "app opened", "session started"} {
		m[n] = ClassIgnore
	}
	return m
}

var searchNames = map[string]bool{"search performed": true, "products searched": true, "search": true}

// props are the properties the sessionizer reads.
type props struct {
	event.Video
	Program     flexString
	SeriesID    flexString
	Title       flexString
	Season      flexString
	Episode     flexString
	PlaybackID  flexString // session_id / playback_session_id: the playback session
	Next        nextEpisode
	CredStart   float64
	Preview     bool
	FullEpisode *bool
	ContentType string
	VideoType   string
	AdType      string
	Livestream  bool
	Name        string
	Path        string
}

// nextEpisode is what an event says about the episode after its asset.
type nextEpisode struct {
	Asset, Title, Season, Episode flexString
}

func (p *props) series() string {
	if p.SeriesID != "" {
		return string(p.SeriesID)
	}
	return string(p.Program)
}

func (p *props) preview() bool {
	t := strings.ToLower(p.ContentType + " " + p.VideoType)
	return p.Preview || strings.Contains(t, "preview") || strings.Contains(t, "trailer")
}

// flexString accepts a JSON string or number.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	*f = flexString(b)
	return nil
}

func atoi(f flexString) int64 {
	if f == "" {
		return 0 // without the error strconv would allocate
	}
	n, _ := strconv.ParseInt(string(f), 10, 64)
	return n
}

// classified is an event as the state machine sees it.
type classified struct {
	kind uint8
	name string // screen/page name for views
	p    *props
}

// classify decides an event's kind: page and screen views are
// interactions; track events are playback events by name (previews and
// trailers never are: they tease), then the interactions table; other
// types count for nothing but the session's event count.
func (c *Config) classify(ev *fields) classified {
	cl := classified{p: &ev.p}
	switch ev.typ {
	case event.TypePage, event.TypeScreen:
		cl.kind, cl.name = kindView, ev.name
		if cl.name == "" {
			cl.name = firstNonEmpty(ev.p.Name, ev.p.Path, ev.typ)
		}
		return cl
	case event.TypeTrack:
	default:
		return cl
	}
	name := ev.eventKey
	preview := ev.p.preview() || strings.Contains(name, "preview") || strings.Contains(name, "trailer")
	if k, ok := playbackKinds[name]; ok {
		switch {
		case k == kindRemove:
			cl.kind = k
		case preview:
			cl.kind = kindTease // previews never create bookmarks or plays
		default:
			cl.kind = k
		}
		return cl
	}
	switch c.interactions[name] {
	case ClassCount:
		cl.kind = kindInteract
		if searchNames[name] {
			cl.kind = kindSearch
		}
	case ClassOncePerTitle:
		cl.kind = kindTease
	default:
		if strings.HasPrefix(name, "video ad ") {
			cl.kind = kindOther // ad quartiles, ad playing: not content
		}
	}
	return cl
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
