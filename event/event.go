// Package event is clickpipe's shared vocabulary: the normalised Event that
// ingest produces and every downstream stage consumes, user keys and
// partitioning, and the wire codec of the group-commit messages stored in the
// buffer. It imports nothing but the standard library.
package event

import (
	"encoding/json"
	"time"
)

// Event types accepted by the tracking API.
const (
	TypeTrack    = "track"
	TypePage     = "page"
	TypeScreen   = "screen"
	TypeIdentify = "identify"
	TypeGroup    = "group"
	TypeAlias    = "alias"
)

// Event is one normalised tracking event as stored in the buffer. Field names
// follow Segment's camelCase so the stored JSON reads like what SDKs send;
// docs/format/event.md documents every field.
type Event struct {
	MessageID   string `json:"messageId"`
	Source      string `json:"source"`
	Type        string `json:"type"`
	Event       string `json:"event,omitempty"`
	Name        string `json:"name,omitempty"`
	UserID      string `json:"userId,omitempty"`
	AnonymousID string `json:"anonymousId,omitempty"`
	PreviousID  string `json:"previousId,omitempty"`
	GroupID     string `json:"groupId,omitempty"`

	// Timestamp is the corrected event time (Segment semantics).
	Timestamp time.Time `json:"timestamp"`
	// OriginalTimestamp is the client's timestamp as sent, or ReceivedAt
	// when the client sent none or it did not parse.
	OriginalTimestamp time.Time `json:"originalTimestamp"`
	// SentAt is the client's send time, zero when absent.
	SentAt time.Time `json:"sentAt,omitzero"`
	// ReceivedAt is the server clock at arrival.
	ReceivedAt time.Time `json:"receivedAt"`
	// SkewMillis is the clock-skew correction applied to Timestamp.
	SkewMillis int64 `json:"skewMs,omitempty"`

	Properties   json.RawMessage `json:"properties,omitempty"`
	Traits       json.RawMessage `json:"traits,omitempty"`
	Context      json.RawMessage `json:"context,omitempty"`
	Integrations json.RawMessage `json:"integrations,omitempty"`

	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`
	Device    Device `json:"device,omitzero"`
	Bot       bool   `json:"bot,omitempty"`
	// Warnings are non-fatal normalisation notes such as
	// "ignored_invalid_timestamp".
	Warnings []string `json:"warnings,omitempty"`
}

// Device is what ingest derived from the user agent and context.
type Device struct {
	// Platform is web, mobile, tv or server.
	Platform string `json:"platform,omitempty"`
	Type     string `json:"type,omitempty"`
	OS       string `json:"os,omitempty"`
	Browser  string `json:"browser,omitempty"`
}

// UserKey is the identity events are partitioned and sessionized by: the
// userId, else the anonymousId.
func (e *Event) UserKey() string {
	if e.UserID != "" {
		return e.UserID
	}
	return e.AnonymousID
}

// Failed is an item that ingest could not accept, kept with its reason and
// original bytes in the failed-events stream so it can be listed and
// re-injected.
type Failed struct {
	Reason     string          `json:"reason"`
	Detail     string          `json:"detail,omitempty"`
	Source     string          `json:"source,omitempty"`
	MessageID  string          `json:"messageId,omitempty"`
	ReceivedAt time.Time       `json:"receivedAt"`
	Raw        json.RawMessage `json:"raw,omitempty"`
	// RawText holds the original bytes when they are not valid JSON.
	RawText string `json:"rawText,omitempty"`
	// Stream, StreamSeq and StreamIndex are the position of an item that
	// was accepted into a buffer stream but could not be applied there
	// (a poison line found by the archive); empty for items ingest refused.
	Stream      string `json:"stream,omitempty"`
	StreamSeq   uint64 `json:"streamSeq,omitempty"`
	StreamIndex uint32 `json:"streamIndex,omitempty"`
}

// Failure reasons, stable names used in metrics, the failed stream and the
// lake.
const (
	ReasonNoUserID     = "no_user_anon_id"
	ReasonNoEvent      = "track_without_event"
	ReasonUnknownType  = "unknown_type"
	ReasonTooLarge     = "item_too_large"
	ReasonInvalidItem  = "invalid_item"
	ReasonMissingField = "missing_required_field"
	ReasonTooManyItems = "too_many_items"
	ReasonBot          = "bot"
	ReasonUndecodable  = "undecodable"
	// ReasonInvalidID: an id or name (messageId, userId, anonymousId,
	// previousId, groupId, an asset id, an event or screen name) holds a
	// control character or exceeds its documented length cap.
	ReasonInvalidID = "invalid_id"
)
