package process

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clickpipe/clickpipe/event"
)

// fields are what the sessionizer reads of one event line.
type fields struct {
	messageID, source, typ, event, name string
	eventKey                            string // event lower-cased and trimmed, for classify
	userID, anonymousID, platform       string
	previousID                          string
	timestamp, receivedAt               time.Time
	p                                   props
	traits                              []byte // raw JSON of identify traits
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
	s := scanner{b: line, in: in}
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
		userID: ev.UserID, anonymousID: ev.AnonymousID, previousID: ev.PreviousID, platform: ev.Device.Platform,
		timestamp: ev.Timestamp, receivedAt: ev.ReceivedAt, eventKey: strings.ToLower(strings.TrimSpace(ev.Event))}
	if len(ev.Properties) > 0 {
		var r refProps
		_ = json.Unmarshal(ev.Properties, &r)
		r.into(&f.p)
	}
	if t := bytes.TrimSpace(ev.Traits); len(t) > 0 && t[0] == '{' {
		f.traits = t
	}
}

// refProps is the encoding/json form of props, the reference the
// scanner's fast path must agree with.
type refProps struct {
	ContentAssetID  flexString        `json:"content_asset_id"`
	AssetID         flexString        `json:"asset_id"`
	ContentAssetIDs []json.RawMessage `json:"content_asset_ids"`
	Position        *float64          `json:"position"`
	PositionMs      *float64          `json:"position_ms"`
	TotalLength     *float64          `json:"total_length"`
	TotalLengthMs   *float64          `json:"total_length_ms"`
	Program         flexString        `json:"program"`
	SeriesID        flexString        `json:"series_id"`
	Title           flexString        `json:"title"`
	Season          flexString        `json:"season"`
	Episode         flexString        `json:"episode"`
	SessionID       flexString        `json:"session_id"`
	NextAsset       flexString        `json:"next_episode_asset_id"`
	NextTitle       flexString        `json:"next_episode_title"`
	NextSeason      flexString        `json:"next_episode_season"`
	NextNumber      flexString        `json:"next_episode_number"`
	CreditsStart    float64           `json:"credits_start"`
	Preview         bool              `json:"preview"`
	FullEpisode     *bool             `json:"full_episode"`
	ContentType     string            `json:"content_type"`
	VideoType       string            `json:"video_type"`
	AdType          string            `json:"ad_type"`
	Livestream      bool              `json:"livestream"`
	Name            string            `json:"name"`
	Path            string            `json:"path"`
}

func (r *refProps) into(p *props) {
	*p = props{Program: r.Program, SeriesID: r.SeriesID, Title: r.Title, Season: r.Season, Episode: r.Episode,
		PlaybackID: r.SessionID, Next: nextEpisode{r.NextAsset, r.NextTitle, r.NextSeason, r.NextNumber},
		CredStart: r.CreditsStart, Preview: r.Preview, FullEpisode: r.FullEpisode, ContentType: r.ContentType,
		VideoType: r.VideoType, AdType: r.AdType, Livestream: r.Livestream, Name: r.Name, Path: r.Path}
	p.ContentAssetID, p.AssetID = string(r.ContentAssetID), string(r.AssetID)
	if len(r.ContentAssetIDs) > 0 {
		var first flexString
		if first.UnmarshalJSON(r.ContentAssetIDs[0]) == nil {
			p.FirstContentAssetID = string(first)
		}
	}
	opt := func(v *float64, dst *float64, has *bool) {
		if v != nil {
			*dst, *has = *v, true
		}
	}
	opt(r.Position, &p.Position, &p.HasPosition)
	opt(r.PositionMs, &p.PositionMs, &p.HasPositionMs)
	opt(r.TotalLength, &p.TotalLength, &p.HasTotalLength)
	opt(r.TotalLengthMs, &p.TotalLengthMs, &p.HasTotalMs)
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
	propsNames  = lowerSet("content_asset_id", "asset_id", "content_asset_ids", "position", "position_ms",
		"total_length", "total_length_ms", "program", "series_id", "title", "season", "episode", "session_id",
		"next_episode_asset_id", "next_episode_title", "next_episode_season", "next_episode_number", "credits_start", "preview",
		"full_episode", "content_type", "video_type", "ad_type", "livestream", "name", "path")
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

// maxDepth bounds the nesting the scanner skips; deeper lines go to
// encoding/json.
const maxDepth = 64

// scanner is a strict JSON scanner over one line. Every method returns
// false both for invalid JSON and for valid JSON it leaves to
// encoding/json.
type scanner struct {
	b  []byte
	i  int
	in *interner
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) eat(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// token flags of a string.
const (
	strEscaped = 1 << iota // contains a backslash escape
	strHigh                // contains bytes >= 0x80
)

// str scans a string at s.i and returns its raw contents and flags.
func (s *scanner) str() (raw []byte, flags int, ok bool) {
	if s.peek() != '"' {
		return nil, 0, false
	}
	start := s.i + 1
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			return s.b[start:i], flags, true
		case c == '\\':
			flags |= strEscaped
			if i++; i >= len(s.b) {
				return nil, 0, false
			}
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.b) || !isHex(s.b[i+1]) || !isHex(s.b[i+2]) || !isHex(s.b[i+3]) || !isHex(s.b[i+4]) {
					return nil, 0, false
				}
				i += 4
			default:
				return nil, 0, false
			}
		case c < 0x20:
			return nil, 0, false
		case c >= 0x80:
			flags |= strHigh
		}
	}
	return nil, 0, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number scans a JSON number and returns its literal.
func (s *scanner) number() ([]byte, bool) {
	s.ws()
	b, i, start := s.b, s.i, s.i
	digits := func() bool {
		n := i
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		return i > n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return nil, false
		}
	}
	s.i = i
	return b[start:i], true
}

// skip scans any value.
func (s *scanner) skip(depth int) bool {
	switch s.peek() {
	case '"':
		_, _, ok := s.str()
		return ok
	case '{':
		if depth >= maxDepth {
			return false
		}
		return s.object(func([]byte) bool { return s.skip(depth + 1) })
	case '[':
		if depth >= maxDepth {
			return false
		}
		return s.array(func() bool { return s.skip(depth + 1) })
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	}
	_, ok := s.number()
	return ok
}

// object scans an object, calling member for each plain ASCII key with
// s.i before its value; member must scan the value.
func (s *scanner) object(member func(key []byte) bool) bool {
	if !s.eat('{') {
		return false
	}
	if s.eat('}') {
		return true
	}
	for {
		key, flags, ok := s.str()
		if !ok || flags != 0 || !s.eat(':') || !member(key) {
			return false
		}
		if !s.eat(',') {
			return s.eat('}')
		}
	}
}

func (s *scanner) array(elem func() bool) bool {
	if !s.eat('[') {
		return false
	}
	if s.eat(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if !s.eat(',') {
			return s.eat(']')
		}
	}
}

// text scans a string into dst as encoding/json would.
func (s *scanner) text(dst *string) bool { return s.textIn(dst, s.in) }

// textIn is text interning with in (nil: a fresh string).
func (s *scanner) textIn(dst *string, in *interner) bool {
	start := s.i
	raw, flags, ok := s.str()
	switch {
	case !ok:
		return false
	case flags&strEscaped != 0 || (flags&strHigh != 0 && !utf8.Valid(raw)):
		return json.Unmarshal(s.b[start:s.i], dst) == nil
	}
	*dst = in.str(raw)
	return true
}

// skipText scans a string whose value is not read.
func (s *scanner) skipText() bool {
	_, _, ok := s.str()
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
	start := s.i
	if _, flags, ok := s.str(); !ok || flags != 0 {
		return false
	}
	return dst.UnmarshalJSON(s.b[start:s.i]) == nil
}

func (s *scanner) float(dst *float64) bool {
	lit, ok := s.number()
	if !ok {
		return false
	}
	v, err := strconv.ParseFloat(string(lit), 64)
	*dst = v
	return err == nil
}

func (s *scanner) optFloat(dst *float64) bool {
	if s.peek() == 'n' {
		return s.literal("null")
	}
	return s.float(dst)
}

func (s *scanner) boolean(dst *bool) bool {
	switch s.peek() {
	case 't':
		*dst = true
		return s.literal("true")
	case 'f':
		*dst = false
		return s.literal("false")
	case 'n':
		return s.literal("null")
	}
	return false
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
	s.ws()
	return s.i == len(s.b)
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
	case "previousId":
		return s.text(&f.previousID)
	case "groupId", "ip", "userAgent":
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
	case "traits":
		s.ws()
		start := s.i
		if !s.skip(0) {
			return false
		}
		if start < len(s.b) && s.b[start] == '{' {
			f.traits = bytes.TrimSpace(s.b[start:s.i])
		} else {
			f.traits = nil
		}
		return true
	case "context", "integrations":
		return s.skip(0)
	case "properties":
		f.p = props{}
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
		return s.flexStr(&p.ContentAssetID)
	case "asset_id":
		return s.flexStr(&p.AssetID)
	case "content_asset_ids":
		first := true
		return s.peek() == 'n' && s.literal("null") || s.array(func() bool {
			if first {
				first = false
				return s.flexStr(&p.FirstContentAssetID)
			}
			return s.skip(2)
		})
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
	case "session_id":
		return s.flex(&p.PlaybackID)
	case "next_episode_asset_id":
		return s.flex(&p.Next.Asset)
	case "next_episode_title":
		return s.flex(&p.Next.Title)
	case "next_episode_season":
		return s.flex(&p.Next.Season)
	case "next_episode_number":
		return s.flex(&p.Next.Episode)
	case "position":
		return s.optNum(&p.Position, &p.HasPosition)
	case "position_ms":
		return s.optNum(&p.PositionMs, &p.HasPositionMs)
	case "total_length":
		return s.optNum(&p.TotalLength, &p.HasTotalLength)
	case "total_length_ms":
		return s.optNum(&p.TotalLengthMs, &p.HasTotalMs)
	case "credits_start":
		return s.optFloat(&p.CredStart)
	case "preview":
		return s.boolean(&p.Preview)
	case "full_episode":
		if s.peek() == 'n' {
			return s.literal("null")
		}
		var b bool
		p.FullEpisode = &b
		return s.boolean(&b)
	case "livestream":
		return s.boolean(&p.Livestream)
	case "content_type":
		return s.optText(&p.ContentType)
	case "video_type":
		return s.optText(&p.VideoType)
	case "ad_type":
		return s.optText(&p.AdType)
	case "name":
		return s.optText(&p.Name)
	case "path":
		return s.optText(&p.Path)
	}
	return !folds(key, propsNames) && s.skip(1)
}

// flexStr scans a string or number into a plain string.
func (s *scanner) flexStr(dst *string) bool { return s.flex((*flexString)(dst)) }

// optNum scans a number or null; has reports a number.
func (s *scanner) optNum(dst *float64, has *bool) bool {
	if s.peek() == 'n' {
		*dst, *has = 0, false
		return s.literal("null")
	}
	*has = true
	return s.float(dst)
}
