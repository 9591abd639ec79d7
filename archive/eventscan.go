package archive

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/jsonscan"
)

// decodeEventRow turns one stored event line into its row and event time,
// as json.Unmarshal into event.Event followed by newEventRow does. A
// one-pass scan (scanEvent) reads the lines ingest writes straight into
// the row; anything unusual takes the encoding/json path, so both give the
// same row or error (FuzzDecodeEventRow checks it).
func decodeEventRow(line []byte, pos event.Position, c strCache) (EventRow, time.Time, error) {
	var es eventScan
	if es.scan(line, c) {
		es.row.StreamSeq, es.row.StreamIndex = int64(pos.Seq), int32(pos.Index)
		return es.row, es.ts, nil
	}
	var e event.Event
	if err := json.Unmarshal(line, &e); err != nil {
		return EventRow{}, time.Time{}, err
	}
	return newEventRow(&e, pos), e.Timestamp, nil
}

// maxScanDepth bounds the nesting the scan reads; deeper lines go to
// encoding/json.
const maxScanDepth = 64

// strCache shares the strings of a message's low-cardinality columns
// (source, type, event, platform, user agent, ...) among its rows.
type strCache map[string]string

func (c strCache) str(b []byte) string {
	if s, ok := c[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(c) < 1024 {
		c[s] = s
	}
	return s
}

// eventScan is one line's scan: the row, and what newEventRow derives
// from the whole line once it has been read.
type eventScan struct {
	s        jsonscan.Scanner
	c        strCache
	row      EventRow
	ts       time.Time
	props    []byte
	warnings bool // the warnings key was read (a repeat goes to encoding/json)
}

func (es *eventScan) scan(line []byte, c strCache) bool {
	es.s, es.c = jsonscan.Strict(line, maxScanDepth), c
	r := &es.row
	if !es.s.Object(es.member) || !es.s.AtEnd() {
		return false
	}
	r.Timestamp, r.OriginalTimestamp = es.ts.UTC(), r.OriginalTimestamp.UTC()
	r.SentAt, r.ReceivedAt = r.SentAt.UTC(), r.ReceivedAt.UTC()
	r.Properties = rawString(es.props)
	if len(es.props) > 0 && es.props[0] == '{' && !scanPlayback(r, es.props) {
		promotePlayback(r, es.props)
	}
	return true
}

// eventKeys are event.Event's JSON keys: an unknown key that folds to one
// of them is left to encoding/json's case-insensitive match.
var eventKeys = newKeySet("messageId", "source", "type", "event", "name", "userId", "anonymousId",
	"previousId", "groupId", "timestamp", "originalTimestamp", "sentAt", "receivedAt", "skewMs",
	"properties", "traits", "context", "integrations", "ip", "userAgent", "device", "bot", "warnings")

// member reads one member of the event object. A null leaves a field as
// it is, as in encoding/json.
func (es *eventScan) member(key []byte) bool {
	s, r := &es.s, &es.row
	if s.Peek() == 'n' {
		switch string(key) {
		case "properties", "traits", "context", "integrations", "warnings":
		default:
			return s.Literal("null") && eventKeys.nullOK(key)
		}
	}
	switch string(key) {
	case "messageId":
		return es.text(&r.MessageID, false)
	case "source":
		return es.text(&r.Source, true)
	case "type":
		return es.text(&r.Type, true)
	case "event":
		return es.text(&r.Event, true)
	case "name":
		return es.text(&r.Name, true)
	case "userId":
		return es.text(&r.UserID, false)
	case "anonymousId":
		return es.text(&r.AnonymousID, false)
	case "ip":
		return es.text(&r.IP, false)
	case "userAgent":
		return es.text(&r.UserAgent, true)
	case "previousId", "groupId":
		_, _, ok := s.Str()
		return ok
	case "timestamp":
		return es.time(&es.ts)
	case "originalTimestamp":
		return es.time(&r.OriginalTimestamp)
	case "sentAt":
		return es.time(&r.SentAt)
	case "receivedAt":
		return es.time(&r.ReceivedAt)
	case "skewMs":
		v, ok := s.Int()
		r.SkewMs = v
		return ok
	case "bot":
		v, ok := s.Bool()
		r.Bot = v
		return ok
	case "properties":
		v, ok := s.Value()
		es.props = v
		return ok
	case "traits":
		return es.raw(&r.Traits)
	case "context":
		return es.raw(&r.Context)
	case "integrations":
		return s.Skip()
	case "device":
		return s.Object(es.deviceMember)
	case "warnings":
		return es.readWarnings()
	}
	return !eventKeys.folds(key) && s.Skip()
}

var deviceKeys = newKeySet("platform", "type", "os", "browser")

func (es *eventScan) deviceMember(key []byte) bool {
	s, r := &es.s, &es.row
	if s.Peek() == 'n' {
		return s.Literal("null") && deviceKeys.nullOK(key)
	}
	switch string(key) {
	case "platform":
		return es.text(&r.Platform, true)
	case "type":
		return es.text(&r.DeviceType, true)
	case "os":
		return es.text(&r.OS, true)
	case "browser":
		return es.text(&r.Browser, true)
	}
	return !deviceKeys.folds(key) && s.Skip()
}

// readWarnings reads the warnings array (null: none) joined by commas. A
// repeated key or a null element goes to encoding/json, which decodes
// them into the slice it already filled.
func (es *eventScan) readWarnings() bool {
	s := &es.s
	if es.warnings {
		return false
	}
	es.warnings = true
	if s.Peek() == 'n' {
		return s.Literal("null")
	}
	var b strings.Builder
	n := 0
	ok := s.Array(func() bool {
		raw, flags, ok := s.Str()
		if !ok || flags != 0 {
			return false
		}
		if n++; n > 1 {
			b.WriteByte(',')
		}
		b.Write(raw)
		return true
	})
	es.row.Warnings = es.c.str([]byte(b.String()))
	return ok
}

// text reads a string; shared ones come from the message's cache.
func (es *eventScan) text(dst *string, shared bool) bool {
	raw, flags, ok := es.s.Str()
	switch {
	case !ok:
		return false
	case flags&jsonscan.Escaped != 0:
		*dst, ok = jsonscan.Unquote(raw)
		return ok
	case shared:
		*dst = es.c.str(raw)
	default:
		*dst = string(raw)
	}
	return true
}

func (es *eventScan) time(dst *time.Time) bool {
	t, ok := es.s.Time()
	*dst = t
	return ok
}

// raw reads any value into a JSON text column (null: NULL).
func (es *eventScan) raw(dst *string) bool {
	v, ok := es.s.Value()
	*dst = rawString(v)
	return ok
}

// playbackKeys are playbackProps' JSON keys.
var playbackKeys = newKeySet("asset_id", "content_asset_id", "content_asset_ids", "position", "position_ms",
	"total_length", "total_length_ms", "session_id", "playback_session_id")

// scanPlayback is promotePlayback's fast path over an object the line scan
// already checked; false means "use promotePlayback".
func scanPlayback(r *EventRow, props []byte) bool {
	var raw [5][]byte // asset_id, content_asset_id, content_asset_ids[0], playback_session_id, session_id
	var num [4]*float64
	var vals [4]float64
	s := jsonscan.Trusted(props, maxScanDepth)
	ok := s.Object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "asset_id":
			raw[0], ok = s.Value()
		case "content_asset_id":
			raw[1], ok = s.Value()
		case "content_asset_ids":
			if s.Peek() == 'n' {
				raw[2], ok = nil, s.Literal("null")
				break
			}
			first := true
			raw[2] = nil
			ok = s.Array(func() bool {
				if first {
					first = false
					v, ok := s.Value()
					raw[2] = v
					return ok
				}
				return s.Skip()
			})
		case "playback_session_id":
			raw[3], ok = s.Value()
		case "session_id":
			raw[4], ok = s.Value()
		case "position":
			ok = number(&s, &num[0], &vals[0])
		case "position_ms":
			ok = number(&s, &num[1], &vals[1])
		case "total_length":
			ok = number(&s, &num[2], &vals[2])
		case "total_length_ms":
			ok = number(&s, &num[3], &vals[3])
		default:
			ok = !playbackKeys.folds(key) && s.Skip()
		}
		return ok
	})
	if !ok {
		return false
	}
	if len(raw[2]) > 0 && (raw[2][0] == '{' || raw[2][0] == '[') {
		return false // an odd element: the reference path decides
	}
	setVideo(r, firstScalarRaw(raw[1]), firstScalarRaw(raw[0]), firstScalarRaw(raw[2]), num[0], num[1], num[2], num[3])
	r.PlaybackSessionID = firstScalarRaw(raw[3], raw[4])
	return true
}

// number reads a *float64 member: null clears it; anything but a number
// in range is left to promotePlayback.
func number(s *jsonscan.Scanner, dst **float64, v *float64) bool {
	if s.Peek() == 'n' {
		*dst = nil
		return s.Literal("null")
	}
	f, ok := s.Float()
	*v, *dst = f, v
	return ok
}

// firstScalarRaw is firstScalar over values the scan captured: the first
// non-empty string or number, as a string; a null ends the search with ""
// (encoding/json decodes it into json.Number as "").
func firstScalarRaw(vals ...[]byte) string {
	for _, v := range vals {
		switch {
		case len(v) == 0:
		case v[0] == '"':
			if s, _ := jsonscan.Unquote(v[1 : len(v)-1]); s != "" {
				return s
			}
		case v[0] == 'n':
			return ""
		case v[0] == '-' || '0' <= v[0] && v[0] <= '9':
			return string(v)
		}
	}
	return ""
}

// keySet is the JSON keys of a struct encoding/json decodes into.
type keySet struct{ exact, lower map[string]bool }

func newKeySet(names ...string) keySet {
	ks := keySet{exact: map[string]bool{}, lower: map[string]bool{}}
	for _, n := range names {
		ks.exact[n], ks.lower[strings.ToLower(n)] = true, true
	}
	return ks
}

// nullOK reports whether a null under key is a no-op this scan can take:
// the key is one of the set, or encoding/json ignores it.
func (ks keySet) nullOK(key []byte) bool { return ks.exact[string(key)] || !ks.folds(key) }

// folds reports whether key, not one of the set, equals one ignoring ASCII
// case (keys of 64 bytes or more are longer than any name).
func (ks keySet) folds(key []byte) bool {
	if len(key) >= 64 || ks.exact[string(key)] {
		return false
	}
	var buf [64]byte
	k := buf[:len(key)]
	for i, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		k[i] = c
	}
	return ks.lower[string(k)]
}
