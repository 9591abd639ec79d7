package archive

import (
	"encoding/json"

	"github.com/clickpipe/clickpipe/event"
)

// Table names, which are also the top-level key prefixes of the lake.
const (
	TableEvents   = "events"
	TableSessions = "sessions"
	TableFailed   = "failed"
)

// Streams the tables are consumed from, and the durable consumer names.
var tableStreams = map[string]string{TableEvents: "EVENTS", TableSessions: "SESSIONS", TableFailed: "FAILED"}

// Tables lists the lake's tables in a fixed order.
func Tables() []string { return []string{TableEvents, TableSessions, TableFailed} }

// ConsumerName is the durable consumer of a table.
func ConsumerName(table string) string { return "archive-" + table }

// dedupKey identifies an event for the Deduper; set is false for rows of
// tables that are not deduplicated.
type dedupKey struct {
	source, id string
	pos        event.Position
	set        bool
}

// badItem is an item of a message that cannot be applied to its table:
// it does not decode (event.ReasonUndecodable) or its ids cannot be keys
// (event.ReasonInvalidID). line aliases the message's data.
type badItem struct {
	index  int
	reason string
	err    error
	line   []byte
}

// maxKeyID bounds the source and messageId of an event the Deduper is
// asked about, so that its key stays far below Badger's 65,000-byte limit
// (ingest caps ids at most at this too).
const maxKeyID = event.MaxKeyIDBytes

// decodeFunc turns one buffer message into rows. It is pure, so messages
// decode in parallel; deduplication happens afterwards in stream order.
type decodeFunc[T any] func(m *event.Message) ([]partRow[T], []badItem)

func decodeEvents(m *event.Message) (rows []partRow[EventRow], bad []badItem) {
	c := strCache{}
	_ = event.Lines(m.Data, func(i int, line []byte) error {
		pos := event.Position{Seq: m.Seq, Index: uint32(i)}
		row, ts, err := decodeEventRow(line, pos, c)
		if err != nil {
			bad = append(bad, badItem{i, event.ReasonUndecodable, err, line})
			return nil
		}
		if err := checkKeyIDs(row.MessageID, row.Source); err != nil {
			bad = append(bad, badItem{i, event.ReasonInvalidID, err, line})
			return nil
		}
		rows = append(rows, partRow[EventRow]{part: partitionOf(ts), row: row,
			key: dedupKey{source: row.Source, id: row.MessageID, pos: pos, set: true}})
		return nil
	})
	return rows, bad
}

func decodeSession(m *event.Message) ([]partRow[SessionRow], []badItem) {
	var s event.Session
	if err := json.Unmarshal(m.Data, &s); err != nil {
		return nil, []badItem{{0, event.ReasonUndecodable, err, m.Data}}
	}
	return []partRow[SessionRow]{{part: partitionOf(s.Start), row: newSessionRow(&s, m.Data, m.Seq)}}, nil
}

func decodeFailed(m *event.Message) (rows []partRow[FailedRow], bad []badItem) {
	_ = event.Lines(m.Data, func(i int, line []byte) error {
		var f event.Failed
		if err := json.Unmarshal(line, &f); err != nil {
			bad = append(bad, badItem{i, event.ReasonUndecodable, err, line})
			return nil
		}
		pos := event.Position{Seq: m.Seq, Index: uint32(i)}
		rows = append(rows, partRow[FailedRow]{part: partitionOf(f.ReceivedAt), row: newFailedRow(&f, pos)})
		return nil
	})
	return rows, bad
}

// checkKeyIDs refuses an event whose source or messageId cannot be part of
// a dedup key. Events from this version's ingest always pass; older
// streams and messages published past ingest may not.
func checkKeyIDs(messageID, source string) error {
	if err := event.CheckID(messageID, maxKeyID); err != nil {
		return &keyIDError{"messageId", err}
	}
	if err := event.CheckID(source, maxKeyID); err != nil {
		return &keyIDError{"source", err}
	}
	return nil
}

// keyIDError names the id that cannot be a key part; its text holds no
// byte of the id but a control character's code.
type keyIDError struct {
	field string
	err   error
}

func (e *keyIDError) Error() string { return e.field + ": " + e.err.Error() }
func (e *keyIDError) Unwrap() error { return e.err }
