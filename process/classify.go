package process

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/clickpipe/clickpipe/event"
)

// Mark kinds: what one event means to a session.
const (
	kindView     = "view"   // page or screen view
	kindSearch   = "search" // search performed
	kindBrowse   = "browse" // other UI interaction, impressions, previews
	kindStart    = "start"  // playback started
	kindPlaying  = "hb"     // heartbeat / content playing
	kindPause    = "pause"
	kindResume   = "resume"
	kindSeek     = "seek"
	kindBufStart = "buf_start"
	kindBufEnd   = "buf_end"
	kindComplete = "complete"
	kindExit     = "exit"
	kindRemove   = "cw_remove" // Continue Watching Removed
	kindOther    = "other"     // identify, group, alias, ads, other playback
)

// playbackKinds maps Segment Video Spec and Snowplow media event names.
var playbackKinds = map[string]string{
	"video playback started": kindStart, "play": kindStart,
	"video playback paused": kindPause, "pause": kindPause,
	"video playback resumed":        kindResume,
	"video playback seek completed": kindSeek, "seek_end": kindSeek,
	"video playback buffer started": kindBufStart, "buffer_start": kindBufStart,
	"video playback buffer completed": kindBufEnd, "buffer_end": kindBufEnd,
	"video playback interrupted": kindExit, "video playback exited": kindExit,
	"video playback completed": kindComplete, "video content completed": kindComplete, "end": kindComplete,
	"video content started": kindPlaying, "video content playing": kindPlaying, "ping": kindPlaying,
	"video playback seek started": kindOther, "seek_start": kindOther,
	"continue watching removed": kindRemove,
}

var searchNames = map[string]bool{"search performed": true, "products searched": true, "search": true}

// props are the properties the sessionizer reads.
type props struct {
	ContentAssetID flexString `json:"content_asset_id"`
	AssetID        flexString `json:"asset_id"`
	Position       *float64   `json:"position"`
	TotalLength    float64    `json:"total_length"`
	Program        flexString `json:"program"`
	SeriesID       flexString `json:"series_id"`
	Title          flexString `json:"title"`
	Season         flexString `json:"season"`
	Episode        flexString `json:"episode"`
	NextEpisode    flexString `json:"next_episode_asset_id"`
	CreditsStart   float64    `json:"credits_start"`
	Preview        bool       `json:"preview"`
	ContentType    string     `json:"content_type"`
	VideoType      string     `json:"video_type"`
	Livestream     bool       `json:"livestream"`
	Name           string     `json:"name"`
	Path           string     `json:"path"`
}

func (p *props) asset() string {
	if p.ContentAssetID != "" {
		return string(p.ContentAssetID)
	}
	return string(p.AssetID)
}

func (p *props) series() string {
	if p.SeriesID != "" {
		return string(p.SeriesID)
	}
	return string(p.Program)
}

func (p *props) preview() bool {
	t := strings.ToLower(p.ContentType + p.VideoType)
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

func atoi(f flexString) int {
	if f == "" {
		return 0 // without the error strconv would allocate
	}
	n, _ := strconv.Atoi(string(f))
	return n
}

// classified is an event as the state machine sees it.
type classified struct {
	kind    string
	name    string // screen/page name for views
	preview bool
	p       props
}

func classify(ev *fields) classified {
	c := classified{p: ev.p}
	switch ev.typ {
	case event.TypePage, event.TypeScreen:
		c.kind, c.name = kindView, ev.name
		if c.name == "" {
			c.name = firstNonEmpty(c.p.Name, c.p.Path, ev.typ)
		}
		return c
	case event.TypeTrack:
	default:
		c.kind = kindOther
		return c
	}
	name := ev.eventKey
	c.preview = c.p.preview() || strings.Contains(name, "preview") || strings.Contains(name, "trailer")
	switch k, ok := playbackKinds[name]; {
	case ok && c.preview && k != kindRemove:
		c.kind = kindBrowse // previews never create bookmarks or plays
	case ok:
		c.kind = k
	case searchNames[name]:
		c.kind = kindSearch
	case strings.HasPrefix(name, "video ad ") || strings.HasPrefix(name, "ad_"):
		c.kind = kindOther
	default:
		c.kind = kindBrowse
	}
	return c
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
