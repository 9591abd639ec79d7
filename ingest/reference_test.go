package ingest

// The ingest path as it was before the single-pass decoder (commit
// cff7564), kept verbatim as the reference the fast path is checked
// against (differential_test.go). Only names changed: ref prefixes, and
// calls go to the other reference functions. decodeRequestStd, the
// request decoder of that commit, is still the production fallback and
// serves as its own reference.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clickpipe/clickpipe/event"
)

func (n *normaliser) refNormalise(raw json.RawMessage, m *reqMeta) (*event.Event, *invalidItem) {
	if int64(len(raw)) > n.cfg.MaxEventBytes {
		return nil, &invalidItem{reason: event.ReasonTooLarge, detail: fmt.Sprintf("%d bytes, limit %d", len(raw), n.cfg.MaxEventBytes)}
	}
	var it item
	if err := json.Unmarshal(raw, &it); err != nil {
		return nil, &invalidItem{reason: event.ReasonInvalidItem, detail: err.Error()}
	}
	if m.implied != "" {
		it.Type = m.implied
	}
	ev := &event.Event{
		MessageID: string(it.MessageID), Source: m.source, Type: strings.ToLower(it.Type),
		Event: it.Event, Name: it.Name, UserID: string(it.UserID), AnonymousID: string(it.AnonymousID),
		PreviousID: string(it.PreviousID), GroupID: string(it.GroupID),
		Properties: nullToNil(it.Properties), Traits: nullToNil(it.Traits),
		ReceivedAt: m.receivedAt,
	}
	if bad := validate(ev); bad != nil {
		bad.messageID = ev.MessageID
		return nil, bad
	}
	if bad := n.refCheckIDs(ev); bad != nil {
		return nil, bad
	}
	if ev.MessageID == "" {
		ev.MessageID = newMessageID()
	}
	var err error
	if ev.Context, err = refMergeObjects(m.batchCtx, nullToNil(it.Context)); err != nil {
		return nil, &invalidItem{reason: event.ReasonInvalidItem, detail: "context: " + err.Error(), messageID: ev.MessageID}
	}
	if ev.Integrations, err = refMergeObjects(m.batchInteg, nullToNil(it.Integrations)); err != nil {
		return nil, &invalidItem{reason: event.ReasonInvalidItem, detail: "integrations: " + err.Error(), messageID: ev.MessageID}
	}
	n.refTimes(ev, &it, m)
	n.refEnrich(ev, m)
	return ev, nil
}
func (n *normaliser) refTimes(ev *event.Event, it *item, m *reqMeta) {
	ev.OriginalTimestamp = m.receivedAt
	ev.Timestamp = m.receivedAt
	tsRaw := it.Timestamp
	if tsRaw == "" {
		tsRaw = it.OriginalTimestamp
	}
	if tsRaw == "" {
		return
	}
	orig, ok := refParseTime(tsRaw)
	if !ok || !plausible(orig) {
		ev.Warnings = append(ev.Warnings, "ignored_invalid_timestamp")
		return
	}
	ev.OriginalTimestamp, ev.Timestamp = orig, orig
	sentRaw := it.SentAt
	if sentRaw == "" {
		sentRaw = m.sentAt
	}
	if sentRaw != "" {
		if sent, ok := refParseTime(sentRaw); ok && plausible(sent) {
			ev.SentAt = sent
			skew := m.receivedAt.Sub(sent)
			if skew >= n.cfg.SkewThreshold || skew <= -n.cfg.SkewThreshold {
				ev.Timestamp = orig.Add(skew)
				ev.SkewMillis = skew.Milliseconds()
			}
		} else {
			ev.Warnings = append(ev.Warnings, "ignored_invalid_sent_at")
		}
	}
	if !plausible(ev.Timestamp) {
		ev.Timestamp, ev.SkewMillis = orig, 0
		ev.Warnings = append(ev.Warnings, "ignored_invalid_correction")
	}
	if ev.Timestamp.Sub(m.receivedAt) > n.cfg.FutureLimit {
		ev.Timestamp = m.receivedAt
		ev.Warnings = append(ev.Warnings, "clamped_future_timestamp")
	}
}

// enrich adds IP, user agent, device and bot flag.
func (n *normaliser) refEnrich(ev *event.Event, m *reqMeta) {
	var c itemContext
	if len(ev.Context) > 0 {
		_ = json.Unmarshal(ev.Context, &c) // shape errors only lose enrichment
	}
	ev.IP = c.IP
	if ev.IP == "" {
		ev.IP = m.clientIP
	}
	if n.anonIP {
		ev.IP = anonymize(ev.IP)
		if c.IP != "" {
			ev.Context = refReplaceKey(ev.Context, "ip", ev.IP)
		}
	}
	ev.UserAgent = c.UserAgent
	if ev.UserAgent == "" {
		ev.UserAgent = m.headerUA
	}
	ev.Device = parseUA(ev.UserAgent)
	if c.Device.Type != "" && ev.Device.Type == "" {
		ev.Device.Type = strings.ToLower(c.Device.Type)
	}
	if c.OS.Name != "" && ev.Device.OS == "" {
		ev.Device.OS = c.OS.Name
	}
	ev.Bot = isBot(ev.UserAgent, c.UserAgent == "" && isBrowserLibrary(c.Library.Name))
}

// mergeObjects merges batch-level into item-level JSON objects; the item
// wins on conflicting keys.
func refMergeObjects(batch, own json.RawMessage) (json.RawMessage, error) {
	switch {
	case len(batch) == 0:
		return own, nil
	case len(own) == 0 || bytes.Equal(own, []byte("{}")):
		return batch, nil
	}
	var b, o map[string]json.RawMessage
	if err := json.Unmarshal(batch, &b); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(own, &o); err != nil {
		return nil, err
	}
	for k, v := range b {
		if _, ok := o[k]; !ok {
			o[k] = v
		}
	}
	return json.Marshal(o)
}

// replaceKey sets obj[key] = value (a string) in a JSON object.
func refReplaceKey(obj json.RawMessage, key, value string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil {
		return obj
	}
	m[key] = json.RawMessage(strconv.Quote(value))
	out, err := json.Marshal(m)
	if err != nil {
		return obj
	}
	return out
}

// parseTime accepts RFC 3339 with any fraction and also the non-zero-padded
// dates seen in Segment's own examples (2015-2-02T00:30:08.276Z).
func refParseTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	date, rest, ok := strings.Cut(s, "T")
	if !ok {
		return time.Time{}, false
	}
	parts := strings.Split(date, "-")
	if len(parts) != 3 || len(parts[0]) != 4 {
		return time.Time{}, false
	}
	for i := 1; i < 3; i++ {
		if len(parts[i]) == 1 {
			parts[i] = "0" + parts[i]
		}
	}
	t, err := time.Parse(time.RFC3339Nano, strings.Join(parts, "-")+"T"+rest)
	return t, err == nil
}

// newMessageID returns a random UUIDv4 string.

// refAppendEvent and refAppendString are appendEvent and appendString of
// that commit.
func refAppendEvent(dst []byte, ev *event.Event) ([]byte, error) {
	dst = append(dst, `{"messageId":`...)
	dst = refAppendString(dst, ev.MessageID)
	dst = append(dst, `,"source":`...)
	dst = refAppendString(dst, ev.Source)
	dst = append(dst, `,"type":`...)
	dst = refAppendString(dst, ev.Type)
	dst = refAppendOptString(dst, `,"event":`, ev.Event)
	dst = refAppendOptString(dst, `,"name":`, ev.Name)
	dst = refAppendOptString(dst, `,"userId":`, ev.UserID)
	dst = refAppendOptString(dst, `,"anonymousId":`, ev.AnonymousID)
	dst = refAppendOptString(dst, `,"previousId":`, ev.PreviousID)
	dst = refAppendOptString(dst, `,"groupId":`, ev.GroupID)
	dst = appendTime(append(dst, `,"timestamp":`...), ev.Timestamp)
	dst = appendTime(append(dst, `,"originalTimestamp":`...), ev.OriginalTimestamp)
	if !ev.SentAt.IsZero() {
		dst = appendTime(append(dst, `,"sentAt":`...), ev.SentAt)
	}
	dst = appendTime(append(dst, `,"receivedAt":`...), ev.ReceivedAt)
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
	dst = refAppendOptString(dst, `,"ip":`, ev.IP)
	dst = refAppendOptString(dst, `,"userAgent":`, ev.UserAgent)
	if ev.Device != (event.Device{}) {
		d := ev.Device
		dst = append(dst, `,"device":{`...)
		n := len(dst)
		dst = refAppendOptString(dst, `,"platform":`, d.Platform)
		dst = refAppendOptString(dst, `,"type":`, d.Type)
		dst = refAppendOptString(dst, `,"os":`, d.OS)
		dst = refAppendOptString(dst, `,"browser":`, d.Browser)
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
			dst = refAppendString(dst, w)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}'), nil
}
func refAppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
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

func refAppendOptString(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return refAppendString(append(dst, key...), s)
}

// refCheckIDs is checkIDs with encoding/json for the properties.
func (n *normaliser) refCheckIDs(ev *event.Event) *invalidItem {
	var p struct {
		ContentAssetID flexID `json:"content_asset_id"`
		AssetID        flexID `json:"asset_id"`
		SeriesID       flexID `json:"series_id"`
		NextEpisode    flexID `json:"next_episode_asset_id"`
	}
	if len(ev.Properties) > 0 && json.Unmarshal(ev.Properties, &p) != nil {
		p.ContentAssetID, p.AssetID, p.SeriesID, p.NextEpisode = "", "", "", ""
	}
	idMax, nameMax := n.cfg.MaxIDBytes, n.cfg.MaxNameBytes
	fields := []struct {
		name, v string
		max     int
	}{
		{"messageId", ev.MessageID, idMax}, {"userId", ev.UserID, idMax}, {"anonymousId", ev.AnonymousID, idMax},
		{"previousId", ev.PreviousID, idMax}, {"groupId", ev.GroupID, idMax},
		{"event", ev.Event, nameMax}, {"name", ev.Name, nameMax},
		{"properties.content_asset_id", string(p.ContentAssetID), idMax}, {"properties.asset_id", string(p.AssetID), idMax},
		{"properties.series_id", string(p.SeriesID), idMax}, {"properties.next_episode_asset_id", string(p.NextEpisode), idMax},
	}
	for _, f := range fields {
		if err := event.CheckID(f.v, f.max); err != nil {
			id := ev.MessageID
			if f.name == "messageId" {
				id = ""
			}
			return &invalidItem{reason: event.ReasonInvalidID, detail: f.name + ": " + err.Error(), messageID: id}
		}
	}
	return nil
}
