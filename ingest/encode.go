package ingest

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/clickpipe/clickpipe/event"

	"github.com/clickpipe/clickpipe/internal/jsonscan"
)

// appendEvent appends ev as the JSON that json.Marshal would produce for
// event.Event (same keys, same omissions), without re-validating the raw
// objects: they are slices of a request body that checkJSON and
// json.Unmarshal already validated. Raw objects that contain line breaks
// (pretty-printed input) are compacted so that a line stays one event.
// TestAppendEventMatchesMarshal keeps this in step with event.Event.
func appendEvent(dst []byte, ev *event.Event) ([]byte, error) {
	dst = append(dst, `{"messageId":`...)
	dst = appendString(dst, ev.MessageID)
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, ev.Source)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, ev.Type)
	dst = appendOptString(dst, `,"event":`, ev.Event)
	dst = appendOptString(dst, `,"name":`, ev.Name)
	dst = appendOptString(dst, `,"userId":`, ev.UserID)
	dst = appendOptString(dst, `,"anonymousId":`, ev.AnonymousID)
	dst = appendOptString(dst, `,"previousId":`, ev.PreviousID)
	dst = appendOptString(dst, `,"groupId":`, ev.GroupID)
	dst = append(dst, `,"timestamp":`...)
	ts := len(dst)
	dst = appendTime(dst, ev.Timestamp)
	tsText := dst[ts:]
	dst = append(dst, `,"originalTimestamp":`...)
	if ev.OriginalTimestamp == ev.Timestamp { // the same value formats the same
		dst = append(dst, tsText...)
	} else {
		dst = appendTime(dst, ev.OriginalTimestamp)
	}
	if !ev.SentAt.IsZero() {
		dst = appendTime(append(dst, `,"sentAt":`...), ev.SentAt)
	}
	dst = append(dst, `,"receivedAt":`...)
	if ev.ReceivedAt == ev.Timestamp {
		dst = append(dst, tsText...)
	} else {
		dst = appendTime(dst, ev.ReceivedAt)
	}
	if ev.SkewMillis != 0 {
		dst = strconv.AppendInt(append(dst, `,"skewMs":`...), ev.SkewMillis, 10)
	}
	var err error
	for _, f := range [...]struct {
		key string
		raw json.RawMessage
	}{{`,"properties":`, ev.Properties}, {`,"traits":`, ev.Traits}, {`,"context":`, ev.Context}, {`,"integrations":`, ev.Integrations}} {
		if len(f.raw) == 0 {
			continue
		}
		if dst, err = appendRaw(append(dst, f.key...), f.raw); err != nil {
			return dst, err
		}
	}
	dst = appendOptString(dst, `,"ip":`, ev.IP)
	dst = appendOptString(dst, `,"userAgent":`, ev.UserAgent)
	if ev.Device != (event.Device{}) {
		d := ev.Device
		dst = append(dst, `,"device":{`...)
		n := len(dst)
		dst = appendOptString(dst, `,"platform":`, d.Platform)
		dst = appendOptString(dst, `,"type":`, d.Type)
		dst = appendOptString(dst, `,"os":`, d.OS)
		dst = appendOptString(dst, `,"browser":`, d.Browser)
		dst = append(dst[:n], dst[n+1:]...) // drop the first field's comma
		dst = append(dst, '}')
	}
	if ev.Bot {
		dst = append(dst, `,"bot":true`...)
	}
	if len(ev.Warnings) > 0 {
		dst = append(dst, `,"warnings":[`...)
		for i, w := range ev.Warnings {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, w)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}'), nil
}

func appendOptString(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return appendString(append(dst, key...), s)
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

func appendRaw(dst []byte, raw json.RawMessage) ([]byte, error) {
	if bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0 {
		return append(dst, raw...), nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return dst, err
	}
	return append(dst, buf.Bytes()...), nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping like encoding/json
// (control characters, quote, backslash, <, >, &, U+2028, U+2029;
// invalid UTF-8 becomes U+FFFD).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		i += plainPrefix(s[i:])
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

const (
	lsbs = 0x0101010101010101
	msbs = 0x8080808080808080
)

// plainPrefix returns how many leading bytes of s, in whole 8-byte words,
// appendString copies unchanged: printable ASCII other than '"', '\\',
// '<', '>' and '&'.
func plainPrefix(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		lt, gt, amp := w^(lsbs*'<'), w^(lsbs*'>'), w^(lsbs*'&')
		if jsonscan.SpecialBytes(w)|((lt-lsbs)&^lt|(gt-lsbs)&^gt|(amp-lsbs)&^amp)&msbs != 0 {
			break
		}
	}
	return i
}
