package event

import (
	"encoding/binary"
	"time"
)

// Serving-state records: the sessionizer (process) writes them to the
// state store, the query API (serve) reads them. They are the on-disk
// vocabulary shared by the two, specified in docs/format/badger.md; both
// keys and JSON field names are part of that format.

// Key prefixes of the serving state. Every key starts with one prefix byte
// and a 0x00 separator; user and asset ids must not contain 0x00.
const (
	StateMetaPrefix   = 'm' // m 0 <partition BE16>: PartitionState
	StateDedupPrefix  = 'd' // d 0 <source> 0 <messageId>: first Position (12 bytes)
	StateUserPrefix   = 'u' // u 0 <user> 0 st: UserState; u 0 <user> 0 s 0 <inv start BE64>: Session
	StateTitlePrefix  = 't' // t 0 <asset> 0 <partition BE16>: TitleShard
	StatePathPrefix   = 'p' // p 0 <partition BE16>: PathShard
	StateOpenPrefix   = 'o' // o 0 <partition BE16> <closeAt ms BE64> <user>: open-session index
	StateOutboxPrefix = 'x' // x 0 <sessionId> 0 <version BE32>: Session awaiting publication
)

func stateKey(prefix byte, n int) []byte {
	k := make([]byte, 2, 2+n)
	k[0] = prefix
	return k
}

func be16(b []byte, v int) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }

// PartitionStateKey is the key of a partition's checkpoint record.
func PartitionStateKey(p int) []byte { return be16(stateKey(StateMetaPrefix, 2), p) }

// DedupKey is the dedup-index key of (source, messageId).
func DedupKey(source, messageID string) []byte {
	k := append(stateKey(StateDedupPrefix, len(source)+len(messageID)+1), source...)
	return append(append(k, 0), messageID...)
}

// UserPrefix is the prefix of every key of one user.
func UserPrefix(user string) []byte {
	k := append(stateKey(StateUserPrefix, len(user)+1), user...)
	return append(k, 0)
}

// UserStateKey is the key of a user's UserState.
func UserStateKey(user string) []byte { return append(UserPrefix(user), "st"...) }

// UserSessionsPrefix is the prefix of a user's session records, newest
// first.
func UserSessionsPrefix(user string) []byte { return append(UserPrefix(user), 's', 0) }

// UserSessionKey is the key of the user's session that starts at start.
func UserSessionKey(user string, start time.Time) []byte {
	return binary.BigEndian.AppendUint64(UserSessionsPrefix(user), ^uint64(start.UnixMilli()))
}

// TitlePrefix is the prefix of an asset's per-partition shards.
func TitlePrefix(asset string) []byte {
	k := append(stateKey(StateTitlePrefix, len(asset)+3), asset...)
	return append(k, 0)
}

// TitleShardKey is the key of partition p's shard of an asset's aggregates.
func TitleShardKey(asset string, p int) []byte { return be16(TitlePrefix(asset), p) }

// PathShardKey is the key of partition p's top-paths shard.
func PathShardKey(p int) []byte { return be16(stateKey(StatePathPrefix, 2), p) }

// OpenIndexPrefix is the prefix of partition p's open-session index.
func OpenIndexPrefix(p int) []byte { return be16(stateKey(StateOpenPrefix, 10), p) }

// OpenIndexKey marks that user has a session that closes once the
// watermark reaches closeAt.
func OpenIndexKey(p int, closeAt time.Time, user string) []byte {
	k := binary.BigEndian.AppendUint64(OpenIndexPrefix(p), uint64(closeAt.UnixMilli()))
	return append(k, user...)
}

// OutboxKey is the key of a closed session waiting to be published.
func OutboxKey(sessionID string, version int) []byte {
	k := append(stateKey(StateOutboxPrefix, len(sessionID)+5), sessionID...)
	return binary.BigEndian.AppendUint32(append(k, 0), uint32(version))
}

// EncodePosition is the 12-byte big-endian form of a Position.
func EncodePosition(p Position) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 12), p.Seq)
	return binary.BigEndian.AppendUint32(b, p.Index)
}

// DecodePosition parses EncodePosition's output; ok is false on a wrong
// length.
func DecodePosition(b []byte) (Position, bool) {
	if len(b) != 12 {
		return Position{}, false
	}
	return Position{Seq: binary.BigEndian.Uint64(b), Index: binary.BigEndian.Uint32(b[8:])}, true
}

// PartitionState is a partition's checkpoint: the last applied stream
// sequence and the event-time watermark, committed with every batch.
type PartitionState struct {
	LastSeq uint64 `json:"last_seq"`
	// MaxEventTime is the largest event timestamp applied.
	MaxEventTime time.Time `json:"max_event_time"`
	// Watermark is MaxEventTime minus the allowed lateness, advanced by
	// processing time while the partition is idle.
	Watermark time.Time `json:"watermark"`
	// CommittedAt is the wall-clock time of the commit.
	CommittedAt time.Time `json:"committed_at"`
}

// Bookmark is a user's playback state of one asset; those with InRow set
// form the Continue Watching row.
type Bookmark struct {
	AssetID    string `json:"asset_id"`
	SeriesID   string `json:"series_id,omitempty"`
	Title      string `json:"title,omitempty"`
	Season     int    `json:"season,omitempty"`
	Episode    int    `json:"episode,omitempty"`
	PositionMs int64  `json:"position_ms"`
	TotalMs    int64  `json:"total_ms,omitempty"`
	// WatchedMs is playback time accumulated since the (re)start.
	WatchedMs     int64     `json:"watched_ms"`
	LastWatchedAt time.Time `json:"last_watched_at"`
	InRow         bool      `json:"in_row"`
	Completed     bool      `json:"completed,omitempty"`
	RemovedAt     time.Time `json:"removed_at,omitzero"`
	// NextOf is set on an entry created by a series advance.
	NextOf string `json:"next_of,omitempty"`
	// Buffering, Playing and CountedMinute drive the title aggregates.
	BufferingSince time.Time `json:"buffering_since,omitzero"`
	Playing        bool      `json:"playing,omitempty"`
	CountedMinute  int64     `json:"counted_minute,omitempty"`
}

// DayStats are one user's activity on one UTC day (event time).
type DayStats struct {
	Sessions       int   `json:"sessions"`
	BrowseSessions int   `json:"browse_only_sessions"`
	WatchMs        int64 `json:"watch_ms"`
	RebufferMs     int64 `json:"rebuffer_ms"`
	Plays          int   `json:"plays"`
	Completions    int   `json:"completions"`
}

// UserState is everything the sessionizer keeps per user besides the
// session records.
type UserState struct {
	Bookmarks []Bookmark `json:"bookmarks,omitempty"`
	// Open are sessions the watermark has not closed yet, by start.
	Open []OpenSession `json:"open,omitempty"`
	// Days maps a UTC day number (Unix days) to that day's stats; only the
	// last 28 days are kept.
	Days          map[int64]DayStats `json:"days,omitempty"`
	FirstSeenAt   time.Time          `json:"first_seen_at"`
	LastSessionAt time.Time          `json:"last_session_at,omitzero"`
	LastPlayAt    time.Time          `json:"last_play_at,omitzero"`
	LateEvents    int64              `json:"late_events,omitempty"`
}

// OpenSession is a session still open to late events: its compacted marks
// (heartbeat runs merged) from which Session is recomputed.
type OpenSession struct {
	Platform string `json:"platform,omitempty"`
	Source   string `json:"source,omitempty"`
	Marks    []Mark `json:"marks"`
	// Closing is "max_length" when the next event started a new session
	// because this one reached the cap.
	Closing string `json:"closing,omitempty"`
}

// Mark is one compacted event of an open session.
type Mark struct {
	// At and Until (ms since epoch) span a heartbeat run; Until is 0 for a
	// single event.
	At    int64  `json:"at"`
	Until int64  `json:"until,omitempty"`
	Kind  string `json:"k"`
	Asset string `json:"a,omitempty"`
	// Name is the screen or page name of a view.
	Name string `json:"n,omitempty"`
	// N is the number of raw events the mark stands for.
	N int `json:"c"`
}

// TitleShard is one partition's share of an asset's aggregates.
type TitleShard struct {
	Starts      int64         `json:"starts"`
	Completions int64         `json:"completions"`
	WatchMs     int64         `json:"watch_ms"`
	RebufferMs  int64         `json:"rebuffer_ms"`
	Minutes     []MinuteStats `json:"minutes,omitempty"`
}

// MinuteStats counts one event-time minute (Unix minutes) of an asset.
type MinuteStats struct {
	Minute  int64 `json:"minute"`
	Starts  int64 `json:"starts"`
	Viewers int64 `json:"viewers"`
}

// PathShard counts closed sessions by their path before the first play
// (or abandonment), for one partition.
type PathShard struct {
	Paths map[string]int64 `json:"paths"`
}
