package ingest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// flexID is an id that SDKs send as a string or, occasionally, a number.
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexID(s)
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		*f = flexID(b)
	default:
		return fmt.Errorf("id must be a string or number, got %.20s", b)
	}
	return nil
}

// item is one Segment message as sent.
type item struct {
	Type              string          `json:"type"`
	MessageID         flexID          `json:"messageId"`
	UserID            flexID          `json:"userId"`
	AnonymousID       flexID          `json:"anonymousId"`
	PreviousID        flexID          `json:"previousId"`
	GroupID           flexID          `json:"groupId"`
	Event             string          `json:"event"`
	Name              string          `json:"name"`
	Timestamp         string          `json:"timestamp"`
	OriginalTimestamp string          `json:"originalTimestamp"`
	SentAt            string          `json:"sentAt"`
	Properties        json.RawMessage `json:"properties"`
	Traits            json.RawMessage `json:"traits"`
	Context           json.RawMessage `json:"context"`
	Integrations      json.RawMessage `json:"integrations"`
}

// itemContext is the part of context enrichment reads.
type itemContext struct {
	IP        string `json:"ip"`
	UserAgent string `json:"userAgent"`
	Library   struct {
		Name string `json:"name"`
	} `json:"library"`
	Device struct {
		Type string `json:"type"`
	} `json:"device"`
	OS struct {
		Name string `json:"name"`
	} `json:"os"`
}

// reqMeta is what normalisation needs from the HTTP request.
type reqMeta struct {
	source     string
	receivedAt time.Time
	sentAt     string
	clientIP   string
	headerUA   string
	batchCtx   json.RawMessage
	batchInteg json.RawMessage
	implied    string
}

// invalidItem is an item that goes to the failed-events stream.
type invalidItem struct {
	reason, detail, messageID string
}

func (e *invalidItem) Error() string { return e.reason + ": " + e.detail }

// normaliser turns items into events; it holds configuration and a
// cache of parsed user agents (nil: parse every time).
type normaliser struct {
	cfg     Config
	anonIP  bool
	ua      *uaCache
	checkID IDChecker
}

// uaCacheSize is the number of user agents a generation of the cache holds.
const uaCacheSize = 1024

func newNormaliser(cfg Config, check IDChecker) normaliser {
	if check == nil {
		check = event.CheckID
	}
	return normaliser{cfg: cfg, anonIP: cfg.AnonymizeIP, ua: newUACache(uaCacheSize), checkID: check}
}

// normalise validates and enriches one item. A non-nil *invalidItem means
// the item is rejected with that reason.
func (n *normaliser) normalise(raw json.RawMessage, m *reqMeta) (*event.Event, *invalidItem) {
	ev := new(event.Event)
	if bad := n.normaliseInto(ev, raw, m); bad != nil {
		return nil, bad
	}
	return ev, nil
}

// normaliseInto is normalise writing into ev, which it overwrites
// entirely, so that a request can reuse one Event for all its items.
func (n *normaliser) normaliseInto(ev *event.Event, raw json.RawMessage, m *reqMeta) *invalidItem {
	if int64(len(raw)) > n.cfg.MaxEventBytes {
		return &invalidItem{reason: event.ReasonTooLarge, detail: fmt.Sprintf("%d bytes, limit %d", len(raw), n.cfg.MaxEventBytes)}
	}
	var it item
	if !scanItem(raw, &it) {
		it = item{}
		if err := json.Unmarshal(raw, &it); err != nil {
			return &invalidItem{reason: event.ReasonInvalidItem, detail: err.Error()}
		}
	}
	if m.implied != "" {
		it.Type = m.implied
	}
	*ev = event.Event{
		MessageID: string(it.MessageID), Source: m.source, Type: strings.ToLower(it.Type),
		Event: it.Event, Name: it.Name, UserID: string(it.UserID), AnonymousID: string(it.AnonymousID),
		PreviousID: string(it.PreviousID), GroupID: string(it.GroupID),
		Properties: nullToNil(it.Properties), Traits: nullToNil(it.Traits),
		ReceivedAt: m.receivedAt,
	}
	if bad := validate(ev); bad != nil {
		bad.messageID = ev.MessageID
		return bad
	}
	if bad := n.checkIDs(ev); bad != nil {
		return bad
	}
	if ev.MessageID == "" {
		ev.MessageID = newMessageID()
	}
	var err error
	if ev.Context, err = mergeObjects(m.batchCtx, nullToNil(it.Context)); err != nil {
		return &invalidItem{reason: event.ReasonInvalidItem, detail: "context: " + err.Error(), messageID: ev.MessageID}
	}
	if ev.Integrations, err = mergeObjects(m.batchInteg, nullToNil(it.Integrations)); err != nil {
		return &invalidItem{reason: event.ReasonInvalidItem, detail: "integrations: " + err.Error(), messageID: ev.MessageID}
	}
	n.times(ev, &it, m)
	n.enrich(ev, m)
	return nil
}

// validate applies the per-type rules of SEGMENT-API.md section 5.
func validate(ev *event.Event) *invalidItem {
	switch ev.Type {
	case event.TypeTrack, event.TypePage, event.TypeScreen, event.TypeIdentify, event.TypeGroup, event.TypeAlias:
	case "":
		return &invalidItem{reason: event.ReasonUnknownType, detail: "missing type"}
	default:
		return &invalidItem{reason: event.ReasonUnknownType, detail: fmt.Sprintf("type %.40q", ev.Type)}
	}
	if ev.UserID == "" && ev.AnonymousID == "" {
		return &invalidItem{reason: event.ReasonNoUserID, detail: "neither userId nor anonymousId"}
	}
	switch {
	case ev.Type == event.TypeTrack && ev.Event == "":
		return &invalidItem{reason: event.ReasonNoEvent, detail: "track without event"}
	case ev.Type == event.TypeAlias && (ev.PreviousID == "" || ev.UserID == ""):
		return &invalidItem{reason: event.ReasonMissingField, detail: "alias needs previousId and userId"}
	case ev.Type == event.TypeGroup && ev.GroupID == "":
		return &invalidItem{reason: event.ReasonMissingField, detail: "group needs groupId"}
	}
	return nil
}

// times applies Segment's clock-skew correction with guard-rails:
// timestamp = receivedAt − (sentAt − originalTimestamp), applied only when
// the correction is at least SkewThreshold, and clamped to receivedAt when
// the result lies more than FutureLimit ahead.
func (n *normaliser) times(ev *event.Event, it *item, m *reqMeta) {
	ev.OriginalTimestamp = m.receivedAt
	ev.Timestamp = m.receivedAt
	tsRaw := it.Timestamp
	if tsRaw == "" {
		tsRaw = it.OriginalTimestamp
	}
	if tsRaw == "" {
		return
	}
	orig, ok := parseTime(tsRaw)
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
		if sent, ok := parseTime(sentRaw); ok && plausible(sent) {
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
	if !plausible(ev.Timestamp) { // a correction that left the calendar
		ev.Timestamp, ev.SkewMillis = orig, 0
		ev.Warnings = append(ev.Warnings, "ignored_invalid_correction")
	}
	if ev.Timestamp.Sub(m.receivedAt) > n.cfg.FutureLimit {
		ev.Timestamp = m.receivedAt
		ev.Warnings = append(ev.Warnings, "clamped_future_timestamp")
	}
}

// plausible bounds client times to years 1970-9999: older or newer values
// are client bugs, and years outside 0-9999 cannot even be encoded as
// RFC 3339, which would make a whole group-commit message undecodable.
func plausible(t time.Time) bool { return t.Year() >= 1970 && t.Year() <= 9999 }

// enrich adds IP, user agent, device and bot flag.
func (n *normaliser) enrich(ev *event.Event, m *reqMeta) {
	var c itemContext
	if len(ev.Context) > 0 && !scanContext(ev.Context, &c, n.ua) {
		c = itemContext{}
		_ = json.Unmarshal(ev.Context, &c) // shape errors only lose enrichment
	}
	ev.IP = c.IP
	if ev.IP == "" {
		ev.IP = m.clientIP
	}
	if n.anonIP {
		ev.IP = anonymize(ev.IP)
		if c.IP != "" {
			ev.Context = replaceKey(ev.Context, "ip", ev.IP)
		}
	}
	ev.UserAgent = c.UserAgent
	if ev.UserAgent == "" {
		ev.UserAgent = m.headerUA
	}
	var ua uaInfo
	if ev.UserAgent != "" {
		ua = n.ua.lookup(ev.UserAgent)
	}
	ev.Device = ua.device
	if c.Device.Type != "" && ev.Device.Type == "" {
		ev.Device.Type = strings.ToLower(c.Device.Type)
	}
	if c.OS.Name != "" && ev.Device.OS == "" {
		ev.Device.OS = c.OS.Name
	}
	ev.Bot = ua.bot || c.UserAgent == "" && isBrowserLibrary(c.Library.Name)
}

// replaceKeyStd is replaceKey through encoding/json.
func replaceKeyStd(obj json.RawMessage, key, value string) json.RawMessage {
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
func parseTime(s string) (time.Time, bool) {
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
func newMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}
