package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Group-commit messages: one buffer message carries many events of one
// partition, encoded as newline-delimited JSON (one Event per line, no
// trailing newline required). JSON escapes raw newlines inside strings, so a
// line is always exactly one event. docs/format/buffer.md is the spec.
const (
	// HeaderCodec names the encoding of a message body.
	HeaderCodec = "Clickpipe-Codec"
	// HeaderCount is the number of events in a message.
	HeaderCount = "Clickpipe-Events"
	// CodecNDJSON is the only codec so far.
	CodecNDJSON = "ndjson-v1"
	// HeaderControl marks a control message of the sessionizer on a
	// partition subject (an identity merge step, docs/format/buffer.md);
	// its body is not events, and the lake skips it.
	HeaderControl = "Clickpipe-Control"
	// ControlForget is the control kind of a regulation's forget message:
	// the sessionizer removes every key of its ids (issue 13).
	ControlForget = "forget"
)

// Forget is the JSON body of a forget control message: the ids of one
// regulation that live in the partition it is published to.
type Forget struct {
	Regulation string   `json:"regulation"`
	IDs        []string `json:"ids"`
}

// ErrCorruptMessage reports a buffer message that does not decode.
var ErrCorruptMessage = errors.New("event: corrupt message")

// Encoder appends events to a group-commit message body.
type Encoder struct {
	buf   bytes.Buffer
	count int
}

// AppendEncoded adds one event already encoded with json.Marshal.
func (e *Encoder) AppendEncoded(line []byte) {
	if e.count > 0 {
		e.buf.WriteByte('\n')
	}
	e.buf.Write(line)
	e.count++
}

// Append encodes and adds one event.
func (e *Encoder) Append(ev *Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding event %s: %w", ev.MessageID, err)
	}
	e.AppendEncoded(b)
	return nil
}

// Len is the body size so far in bytes.
func (e *Encoder) Len() int { return e.buf.Len() }

// Count is the number of events so far.
func (e *Encoder) Count() int { return e.count }

// Bytes returns the body; it stays valid until the next Append or Reset.
func (e *Encoder) Bytes() []byte { return e.buf.Bytes() }

// Reset empties the encoder for reuse.
func (e *Encoder) Reset() { e.buf.Reset(); e.count = 0 }

// Lines calls fn for every encoded event line in body, in order, with its
// index inside the message. It stops at the first error fn returns.
func Lines(body []byte, fn func(index int, line []byte) error) error {
	idx := 0
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if len(line) == 0 {
			continue
		}
		if err := fn(idx, line); err != nil {
			return err
		}
		idx++
	}
	return nil
}

// Decode parses every event of a group-commit message body.
func Decode(body []byte) ([]Event, error) {
	var out []Event
	err := Lines(body, func(i int, line []byte) error {
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("%w: line %d: %w", ErrCorruptMessage, i, err)
		}
		out = append(out, ev)
		return nil
	})
	return out, err
}

// Position is where an event sits in the buffer: the stream sequence of
// its message and its index inside that message. Positions are totally
// ordered and stable across replays, so "first occurrence" of a messageId is
// well defined.
type Position struct {
	Seq   uint64
	Index uint32
}

// Less orders positions by stream order.
func (p Position) Less(q Position) bool {
	return p.Seq < q.Seq || (p.Seq == q.Seq && p.Index < q.Index)
}

// String renders "seq:index".
func (p Position) String() string {
	return strconv.FormatUint(p.Seq, 10) + ":" + strconv.FormatUint(uint64(p.Index), 10)
}
