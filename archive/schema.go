package archive

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// EventRow is one row of the events table. Optional columns hold NULL for
// zero values. The partition columns dt and hour live in the object key.
type EventRow struct {
	MessageID         string    `parquet:"message_id,zstd"`
	Source            string    `parquet:"source,zstd,dict"`
	Type              string    `parquet:"type,zstd,dict"`
	Event             string    `parquet:"event,optional,zstd,dict"`
	Name              string    `parquet:"name,optional,zstd,dict"`
	UserID            string    `parquet:"user_id,optional,zstd"`
	AnonymousID       string    `parquet:"anonymous_id,optional,zstd"`
	Timestamp         time.Time `parquet:"timestamp,timestamp(microsecond:utc),zstd"`
	OriginalTimestamp time.Time `parquet:"original_timestamp,timestamp(microsecond:utc),zstd"`
	SentAt            time.Time `parquet:"sent_at,optional,timestamp(microsecond:utc),zstd"`
	ReceivedAt        time.Time `parquet:"received_at,timestamp(microsecond:utc),zstd"`
	SkewMs            int64     `parquet:"skew_ms,zstd"`
	Platform          string    `parquet:"platform,optional,zstd,dict"`
	DeviceType        string    `parquet:"device_type,optional,zstd,dict"`
	OS                string    `parquet:"os,optional,zstd,dict"`
	Browser           string    `parquet:"browser,optional,zstd,dict"`
	IP                string    `parquet:"ip,optional,zstd"`
	UserAgent         string    `parquet:"user_agent,optional,zstd,dict"`
	Bot               bool      `parquet:"bot"`
	AssetID           string    `parquet:"asset_id,optional,zstd,dict"`
	PositionS         *float64  `parquet:"position_s,zstd"`
	TotalLengthS      *float64  `parquet:"total_length_s,zstd"`
	PlaybackSessionID string    `parquet:"playback_session_id,optional,zstd"`
	Properties        string    `parquet:"properties,optional,zstd"`
	Context           string    `parquet:"context,optional,zstd"`
	Traits            string    `parquet:"traits,optional,zstd"`
	Warnings          string    `parquet:"warnings,optional,zstd,dict"`
	StreamSeq         int64     `parquet:"stream_seq,zstd"`
	StreamIndex       int32     `parquet:"stream_index,zstd"`
}

// SessionRow is one row of the sessions table: one version of a closed
// session. Readers keep the highest version per session_id.
type SessionRow struct {
	SessionID         string    `parquet:"session_id,zstd"`
	Version           int32     `parquet:"version,zstd"`
	UserKey           string    `parquet:"user_key,zstd"`
	Source            string    `parquet:"source,optional,zstd,dict"`
	Platform          string    `parquet:"platform,optional,zstd,dict"`
	Start             time.Time `parquet:"start,timestamp(microsecond:utc),zstd"`
	End               time.Time `parquet:"end,timestamp(microsecond:utc),zstd"`
	DurationMs        int64     `parquet:"duration_ms,zstd"`
	Events            int32     `parquet:"events,zstd"`
	BrowseCount       int32     `parquet:"browse_count,zstd"`
	Searches          int32     `parquet:"searches,zstd"`
	Plays             int32     `parquet:"plays,zstd"`
	Pauses            int32     `parquet:"pauses,zstd"`
	PauseMs           int64     `parquet:"pause_ms,zstd"`
	Seeks             int32     `parquet:"seeks,zstd"`
	Rebuffers         int32     `parquet:"rebuffers,zstd"`
	RebufferMs        int64     `parquet:"rebuffer_ms,zstd"`
	WatchMs           int64     `parquet:"watch_ms,zstd"`
	ClicksToPlay      int32     `parquet:"clicks_to_play,zstd"`
	TimeToPlayMs      int64     `parquet:"time_to_play_ms,zstd"`
	ScreensBeforePlay string    `parquet:"screens_before_play,optional,zstd"`
	BrowseAbandon     bool      `parquet:"browse_abandon"`
	ClosedBy          string    `parquet:"closed_by,optional,zstd,dict"`
	// Record is the whole session JSON, so fields added to event.Session
	// later are kept before they get a column.
	Record    string `parquet:"record,zstd"`
	StreamSeq int64  `parquet:"stream_seq,zstd"`
}

// FailedRow is one row of the failed table.
type FailedRow struct {
	Reason     string    `parquet:"reason,zstd,dict"`
	Detail     string    `parquet:"detail,optional,zstd,dict"`
	Source     string    `parquet:"source,optional,zstd,dict"`
	MessageID  string    `parquet:"message_id,optional,zstd"`
	ReceivedAt time.Time `parquet:"received_at,timestamp(microsecond:utc),zstd"`
	// Raw holds the original bytes of the item.
	Raw         []byte `parquet:"raw,zstd"`
	StreamSeq   int64  `parquet:"stream_seq,zstd"`
	StreamIndex int32  `parquet:"stream_index,zstd"`
	// OriginStream, OriginSeq and OriginIndex are the position of a
	// poison item in the stream it was found in (null for items ingest
	// refused).
	OriginStream string `parquet:"origin_stream,optional,zstd,dict"`
	OriginSeq    int64  `parquet:"origin_seq,optional,zstd"`
	OriginIndex  int32  `parquet:"origin_index,optional,zstd"`
}

// newEventRow converts a normalised event at its stream position.
func newEventRow(e *event.Event, pos event.Position) EventRow {
	r := EventRow{
		MessageID: e.MessageID, Source: e.Source, Type: e.Type, Event: e.Event, Name: e.Name,
		UserID: e.UserID, AnonymousID: e.AnonymousID,
		Timestamp: e.Timestamp.UTC(), OriginalTimestamp: e.OriginalTimestamp.UTC(),
		SentAt: e.SentAt.UTC(), ReceivedAt: e.ReceivedAt.UTC(), SkewMs: e.SkewMillis,
		Platform: e.Device.Platform, DeviceType: e.Device.Type, OS: e.Device.OS, Browser: e.Device.Browser,
		IP: e.IP, UserAgent: e.UserAgent, Bot: e.Bot,
		Properties: rawString(e.Properties), Context: rawString(e.Context), Traits: rawString(e.Traits),
		Warnings:  strings.Join(e.Warnings, ","),
		StreamSeq: int64(pos.Seq), StreamIndex: int32(pos.Index),
	}
	promotePlayback(&r, e.Properties)
	return r
}

// playbackProps are the Segment Video Spec properties promoted to columns.
// Which asset, position and length they give is event.Video's rule, the
// one the sessionizer applies too.
type playbackProps struct {
	AssetID         json.RawMessage   `json:"asset_id"`
	ContentAssetID  json.RawMessage   `json:"content_asset_id"`
	ContentAssetIDs []json.RawMessage `json:"content_asset_ids"`
	Position        *float64          `json:"position"`
	PositionMs      *float64          `json:"position_ms"`
	TotalLength     *float64          `json:"total_length"`
	TotalLengthMs   *float64          `json:"total_length_ms"`
	SessionID       json.RawMessage   `json:"session_id"`
	PlaybackSessID  json.RawMessage   `json:"playback_session_id"`
}

func promotePlayback(r *EventRow, props json.RawMessage) {
	if len(bytes.TrimSpace(props)) == 0 || bytes.TrimSpace(props)[0] != '{' {
		return
	}
	var p playbackProps
	if json.Unmarshal(props, &p) != nil {
		return // properties that are not an object keep only the JSON column
	}
	var first json.RawMessage
	if len(p.ContentAssetIDs) > 0 {
		first = p.ContentAssetIDs[0]
	}
	setVideo(r, firstScalar(p.ContentAssetID), firstScalar(p.AssetID), firstScalar(first),
		p.Position, p.PositionMs, p.TotalLength, p.TotalLengthMs)
	r.PlaybackSessionID = firstScalar(p.PlaybackSessID, p.SessionID)
}

// setVideo fills the promoted playback columns with event.Video's rule.
func setVideo(r *EventRow, contentAssetID, assetID, firstContentAssetID string, pos, posMs, length, lengthMs *float64) {
	v := event.Video{ContentAssetID: contentAssetID, AssetID: assetID, FirstContentAssetID: firstContentAssetID}
	if pos != nil {
		v.Position, v.HasPosition = *pos, true
	}
	if posMs != nil {
		v.PositionMs, v.HasPositionMs = *posMs, true
	}
	if length != nil {
		v.TotalLength, v.HasTotalLength = *length, true
	}
	if lengthMs != nil {
		v.TotalLengthMs, v.HasTotalMs = *lengthMs, true
	}
	r.AssetID = v.Asset()
	r.PositionS, r.TotalLengthS = nil, nil
	if ms, ok := v.PositionMillis(); ok {
		s := float64(ms) / 1000
		r.PositionS = &s
	}
	if ms := v.LengthMillis(); ms > 0 {
		s := float64(ms) / 1000
		r.TotalLengthS = &s
	}
}

// firstScalar returns the first value that is a non-empty string or a
// number, as a string.
func firstScalar(vals ...json.RawMessage) string {
	for _, v := range vals {
		if len(v) == 0 {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil && s != "" {
			return s
		}
		var n json.Number
		if json.Unmarshal(v, &n) == nil {
			return n.String()
		}
	}
	return ""
}

// rawString is a JSON text column value: NULL for absent or null JSON.
// These columns are plain STRING holding JSON text, not the JSON logical
// type: parquet-go v0.32.0 panics writing an optional JSON column.
func rawString(m json.RawMessage) string {
	if len(m) == 0 || string(m) == "null" {
		return ""
	}
	return string(m)
}

func newSessionRow(s *event.Session, record []byte, seq uint64) SessionRow {
	var screens string
	if len(s.ScreensBeforePlay) > 0 {
		b, _ := json.Marshal(s.ScreensBeforePlay)
		screens = rawString(b)
	}
	return SessionRow{
		SessionID: s.SessionID, Version: int32(s.Version), UserKey: s.UserKey, Source: s.Source,
		Platform: s.Platform, Start: s.Start.UTC(), End: s.End.UTC(), DurationMs: s.DurationMs,
		Events: int32(s.Events), BrowseCount: int32(s.BrowseCount), Searches: int32(s.Searches),
		Plays: int32(s.Plays), Pauses: int32(s.Pauses), PauseMs: s.PauseMs, Seeks: int32(s.Seeks),
		Rebuffers: int32(s.Rebuffers), RebufferMs: s.RebufferMs, WatchMs: s.WatchMs,
		ClicksToPlay: int32(s.ClicksToPlay), TimeToPlayMs: s.TimeToPlayMs,
		ScreensBeforePlay: screens, BrowseAbandon: s.BrowseAbandon, ClosedBy: s.ClosedBy,
		Record: string(record), StreamSeq: int64(seq),
	}
}

func newFailedRow(f *event.Failed, pos event.Position) FailedRow {
	raw := []byte(f.Raw)
	if len(raw) == 0 {
		raw = []byte(f.RawText)
	}
	return FailedRow{
		Reason: f.Reason, Detail: f.Detail, Source: f.Source, MessageID: f.MessageID,
		ReceivedAt: f.ReceivedAt.UTC(), Raw: raw, StreamSeq: int64(pos.Seq), StreamIndex: int32(pos.Index),
		OriginStream: f.Stream, OriginSeq: int64(f.StreamSeq), OriginIndex: int32(f.StreamIndex),
	}
}

// partitionOf is the Hive partition path of an instant: dt=YYYY-MM-DD/hour=HH.
func partitionOf(t time.Time) string {
	t = t.UTC()
	return "dt=" + t.Format("2006-01-02") + "/hour=" + twoDigits(t.Hour())
}

func twoDigits(h int) string {
	s := strconv.Itoa(h)
	if len(s) < 2 {
		return "0" + s
	}
	return s
}
