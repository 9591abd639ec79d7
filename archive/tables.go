package archive

import (
	"encoding/json"
	"fmt"

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

// emitFunc receives one row and its Hive partition.
type emitFunc[T any] func(partition string, row T)

// decodeFunc turns one buffer message into rows. A returned error is
// transient (the message is retried); items that cannot decode are counted
// and reported through bad.
type decodeFunc[T any] func(m *event.Message, emit emitFunc[T], bad func(index int, err error)) error

func (a *Archiver) decodeEvents(m *event.Message, emit emitFunc[EventRow], bad func(int, error)) error {
	return event.Lines(m.Data, func(i int, line []byte) error {
		var e event.Event
		if err := json.Unmarshal(line, &e); err != nil {
			bad(i, err)
			return nil
		}
		pos := event.Position{Seq: m.Seq, Index: uint32(i)}
		if a.deps.Deduper != nil {
			first, err := a.deps.Deduper.FirstOccurrence(e.Source, e.MessageID, pos)
			if err != nil {
				return fmt.Errorf("dedup %s at %s: %w", e.MessageID, pos, err)
			}
			if !first {
				a.m.duplicates.WithLabelValues(TableEvents).Inc()
				return nil
			}
		}
		emit(partitionOf(e.Timestamp), newEventRow(&e, pos))
		return nil
	})
}

func decodeSession(m *event.Message, emit emitFunc[SessionRow], bad func(int, error)) error {
	var s event.Session
	if err := json.Unmarshal(m.Data, &s); err != nil {
		bad(0, err)
		return nil
	}
	emit(partitionOf(s.Start), newSessionRow(&s, m.Data, m.Seq))
	return nil
}

func decodeFailed(m *event.Message, emit emitFunc[FailedRow], bad func(int, error)) error {
	return event.Lines(m.Data, func(i int, line []byte) error {
		var f event.Failed
		if err := json.Unmarshal(line, &f); err != nil {
			bad(i, err)
			return nil
		}
		emit(partitionOf(f.ReceivedAt), newFailedRow(&f, event.Position{Seq: m.Seq, Index: uint32(i)}))
		return nil
	})
}
