package process

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/jsonscan"
)

// fields are what the sessionizer reads of one event line.
type fields struct {
	messageID, source, typ, event, name string
	eventKey                            string // event lower-cased and trimmed, for classify
	userID, anonymousID, platform       string
	timestamp, receivedAt               time.Time
	p                                   props
	pos                                 float64 // p.Position points here on the fast path
}

func (f *fields) userKey() string {
	if f.userID != "" {
		return f.userID
	}
	return f.anonymousID
}

// decode fills f from one event line and reports false for a line that
// json.Unmarshal into event.Event rejects. A one-pass scanner handles the
// lines it fully understands; anything unusual (escaped or case-folded
// keys, nulls where a value is read, odd types) takes the encoding/json
// path, so both give the same result (FuzzDecode checks it).
func (f *fields) decode(line []byte, in *interner) bool {
	*f = fields{}
	s := newScanner(line, in)
	if s.event(f) {
		f.eventKey = in.eventKey(f.event)
		return true
	}
	*f = fields{}
	var ev event.Event
	if err := json.Unmarshal(line, &ev); err != nil {
		return false
	}
	f.fromEvent(&ev)
	return true
}

// fromEvent is the reference decoding: the fields of a decoded event,
// its properties decoded with encoding/json (unknown shapes just lack
// fields).
func (f *fields) fromEvent(ev *event.Event) {
	*f = fields{messageID: ev.MessageID, source: ev.Source, typ: ev.Type, event: ev.Event, name: ev.Name,
		userID: ev.UserID, anonymousID: ev.AnonymousID, platform: ev.Device.Platform,
		timestamp: ev.Timestamp, receivedAt: ev.ReceivedAt, eventKey: strings.ToLower(strings.TrimSpace(ev.Event))}
	if len(ev.Properties) > 0 {
		_ = json.Unmarshal(ev.Properties, &f.p)
	}
}

// interner shares the strings that repeat across events (types, names,
// sources, platforms, ids) so decoding allocates each once per partition
// and generation; nil interns nothing.
type interner struct {
	strs map[string]string
	keys map[string]string // event name -> eventKey
}

// maxInterned bounds an interner; a full one starts over.
const maxInterned = 1 << 14

func newInterner() *interner {
	return &interner{strs: map[string]string{}, keys: map[string]string{}}
}

func (in *interner) str(b []byte) string {
	if in == nil {
		return string(b)
	}
	if s, ok := in.strs[string(b)]; ok {
		return s
	}
	if len(in.strs) >= maxInterned {
		clear(in.strs)
	}
	s := string(b)
	in.strs[s] = s
	return s
}

func (in *interner) eventKey(name string) string {
	if in == nil {
		return strings.ToLower(strings.TrimSpace(name))
	}
	k, ok := in.keys[name]
	if !ok {
		if len(in.keys) >= maxInterned {
			clear(in.keys)
		}
		k = strings.ToLower(strings.TrimSpace(name))
		in.keys[name] = k
	}
	return k
}

// Lower-cased names of the fields encoding/json would match
// case-insensitively; an unknown key that folds to one of them is left to
// encoding/json.
var (
	eventNames = lowerSet("messageId", "source", "type", "event", "name", "userId", "anonymousId",
		"previousId", "groupId", "timestamp", "originalTimestamp", "sentAt", "receivedAt", "skewMs",
		"properties", "traits", "context", "integrations", "ip", "userAgent", "device", "bot", "warnings")
	deviceNames = lowerSet("platform", "type", "os", "browser")
	propsNames  = lowerSet("content_asset_id", "asset_id", "position", "total_length", "program", "series_id",
		"title", "season", "episode", "next_episode_asset_id", "credits_start", "preview", "content_type",
		"video_type", "livestream", "name", "path")
)

func lowerSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		b := []byte(n)
		lowerASCII(b)
		m[string(b)] = true
	}
	return m
}

func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// folds reports whether an unknown key may match one of names
// case-insensitively (keys of 64 bytes or more are longer than any name).
func folds(key []byte, names map[string]bool) bool {
	if len(key) >= 64 {
		return false
	}
	var buf [64]byte
	k := buf[:len(key)]
	copy(k, key)
	lowerASCII(k)
	return names[string(k)]
}

// maxDepth bounds the nesting the scanner reads, the line's own object
// included; deeper lines go to encoding/json.
const maxDepth = 1 + 64

// scanner is the shared strict JSON scanner (internal/jsonscan) over one
// line, interning with in; its methods are the readers the member
// functions below use. Every method returns false both for invalid JSON
// and for valid JSON it leaves to encoding/json.
type scanner struct {
	jsonscan.Scanner
	in *interner
}

func newScanner(line []byte, in *interner) scanner {
	return scanner{Scanner: jsonscan.Strict(line, maxDepth), in: in}
}

func (s *scanner) peek() byte                               { return s.Peek() }
func (s *scanner) literal(lit string) bool                  { return s.Literal(lit) }
func (s *scanner) number() ([]byte, bool)                   { return s.Number() }
func (s *scanner) object(member func(key []byte) bool) bool { return s.Object(member) }
func (s *scanner) array(elem func() bool) bool              { return s.Array(elem) }

// skip scans any value; the shared scanner counts the depth.
func (s *scanner) skip(int) bool { return s.Skip() }

// text scans a string into dst as encoding/json would.
func (s *scanner) text(dst *string) bool { return s.textIn(dst, s.in) }

// textIn is text interning with in (nil: a fresh string). A strict scan
// has checked the UTF-8 already.
func (s *scanner) textIn(dst *string, in *interner) bool {
	raw, flags, ok := s.Str()
	switch {
	case !ok:
		return false
	case flags&jsonscan.Escaped != 0:
		*dst, ok = jsonscan.Unquote(raw)
		return ok
	}
	*dst = in.str(raw)
	return true
}

// skipText scans a string whose value is not read.
func (s *scanner) skipText() bool {
	_, _, ok := s.Str()
	return ok
}

// optText is text that also takes null (a no-op, as in encoding/json).
func (s *scanner) optText(dst *string) bool {
	if s.peek() == 'n' {
		return s.literal("null")
	}
	return s.text(dst)
}

func (s *scanner) time(dst *time.Time) bool {
	t, ok := s.Time()
	*dst = t
	return ok
}

func (s *scanner) float(dst *float64) bool {
	v, ok := s.Float()
	*dst = v
	return ok
}

func (s *scanner) optFloat(dst *float64) bool {
	if s.peek() == 'n' {
		return s.literal("null")
	}
	return s.float(dst)
}

// boolean scans true, false or null (a no-op, as in encoding/json).
func (s *scanner) boolean(dst *bool) bool {
	if s.peek() == 'n' {
		return s.literal("null")
	}
	v, ok := s.Bool()
	*dst = v
	return ok
}

// flex scans a flexString: a string, a number literal or null.
func (s *scanner) flex(dst *flexString) bool {
	switch s.peek() {
	case '"':
		return s.text((*string)(dst))
	case 'n':
		return s.literal("null")
	}
	lit, ok := s.number()
	if ok {
		*dst = flexString(s.in.str(lit))
	}
	return ok
}

// event scans a whole line.
func (s *scanner) event(f *fields) bool {
	if !s.object(func(key []byte) bool { return s.eventMember(key, f) }) {
		return false
	}
	return s.AtEnd()
}

func (s *scanner) eventMember(key []byte, f *fields) bool {
	switch string(key) {
	case "messageId":
		return s.textIn(&f.messageID, nil) // unique: not worth interning
	case "source":
		return s.text(&f.source)
	case "type":
		return s.text(&f.typ)
	case "event":
		return s.text(&f.event)
	case "name":
		return s.text(&f.name)
	case "userId":
		return s.text(&f.userID)
	case "anonymousId":
		return s.text(&f.anonymousID)
	case "timestamp":
		return s.time(&f.timestamp)
	case "receivedAt":
		return s.time(&f.receivedAt)
	case "originalTimestamp", "sentAt":
		var t time.Time
		return s.time(&t)
	case "previousId", "groupId", "ip", "userAgent":
		return s.skipText()
	case "skewMs":
		lit, ok := s.number()
		_, err := strconv.ParseInt(string(lit), 10, 64)
		return ok && err == nil
	case "bot":
		var b bool
		return s.peek() != 'n' && s.boolean(&b)
	case "warnings":
		return s.array(s.skipText)
	case "traits", "context", "integrations":
		return s.skip(0)
	case "properties":
		f.p, f.pos = props{}, 0
		return s.object(func(key []byte) bool { return s.propsMember(key, f) })
	case "device":
		return s.object(func(key []byte) bool { return s.deviceMember(key, f) })
	}
	return !folds(key, eventNames) && s.skip(0)
}

func (s *scanner) deviceMember(key []byte, f *fields) bool {
	switch string(key) {
	case "platform":
		return s.text(&f.platform)
	case "type", "os", "browser":
		return s.skipText()
	}
	return !folds(key, deviceNames) && s.skip(1)
}

func (s *scanner) propsMember(key []byte, f *fields) bool {
	p := &f.p
	switch string(key) {
	case "content_asset_id":
		return s.flex(&p.ContentAssetID)
	case "asset_id":
		return s.flex(&p.AssetID)
	case "program":
		return s.flex(&p.Program)
	case "series_id":
		return s.flex(&p.SeriesID)
	case "title":
		return s.flex(&p.Title)
	case "season":
		return s.flex(&p.Season)
	case "episode":
		return s.flex(&p.Episode)
	case "next_episode_asset_id":
		return s.flex(&p.NextEpisode)
	case "position":
		if s.peek() == 'n' {
			p.Position = nil
			return s.literal("null")
		}
		p.Position = &f.pos
		return s.float(&f.pos)
	case "total_length":
		return s.optFloat(&p.TotalLength)
	case "credits_start":
		return s.optFloat(&p.CreditsStart)
	case "preview":
		return s.boolean(&p.Preview)
	case "livestream":
		return s.boolean(&p.Livestream)
	case "content_type":
		return s.optText(&p.ContentType)
	case "video_type":
		return s.optText(&p.VideoType)
	case "name":
		return s.optText(&p.Name)
	case "path":
		return s.optText(&p.Path)
	}
	return !folds(key, propsNames) && s.skip(1)
}
