package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/clickpipe/clickpipe/event"
)

// FailedPublisher stores items in the buffer's failed-events stream, which
// the failed table archives (*buffer.Buffer satisfies it). A Nats-Msg-Id
// header makes a re-publish within the stream's duplicate window a no-op.
type FailedPublisher interface {
	PublishFailed(ctx context.Context, body []byte, hdr map[string]string) (uint64, error)
}

// maxPoisonRaw bounds the original bytes a poison item keeps in the failed
// stream; longer lines are cut and say so in the detail.
const maxPoisonRaw = 64 << 10

// poisonAttempts bounds the publish attempts for one poison item before it
// is counted as dropped: a poison item must never stall its table.
const poisonAttempts = 5

// poison moves an item that cannot be applied to the failed table (through
// the failed stream) with its reason and stream position, counts it, and
// lets the table move on. Nothing of the item's bytes reaches the log.
func (t *tableWriter[T]) poison(ctx context.Context, m *event.Message, b badItem) {
	t.a.m.undecodable.WithLabelValues(t.name).Inc()
	attrs := []any{"stream", t.stream, "seq", m.Seq, "index", b.index, "reason", b.reason, "err", describe(b.err)}
	if t.name == TableFailed || t.a.deps.Failed == nil {
		t.a.m.poisonDropped.WithLabelValues(t.name).Inc()
		t.log.Error("item cannot be archived; left out of the lake", attrs...)
		return
	}
	body, err := json.Marshal(poisonRecord(t.stream, m, b))
	if err != nil {
		t.a.m.poisonDropped.WithLabelValues(t.name).Inc()
		t.log.Error("encoding a poison item; left out of the lake", append(attrs, "encode_err", err)...)
		return
	}
	hdr := map[string]string{
		event.HeaderCodec: event.CodecNDJSON, event.HeaderCount: "1",
		"Nats-Msg-Id": "poison-" + t.stream + "-" + strconv.FormatUint(m.Seq, 10) + "-" + strconv.Itoa(b.index),
	}
	backoff := t.a.newBackoff()
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = t.a.deps.Failed.PublishFailed(pctx, append(body, '\n'), hdr)
		cancel()
		if err == nil {
			t.a.m.poisonMoved.WithLabelValues(t.name).Inc()
			t.log.Warn("item cannot be archived; moved to the failed table", attrs...)
			return
		}
		if attempt == poisonAttempts || ctx.Err() != nil {
			break
		}
		t.keepAlive(ctx)
		backoff.sleep(ctx)
	}
	t.a.m.poisonDropped.WithLabelValues(t.name).Inc()
	t.log.Error("item cannot be archived and the failed stream refused it; dropped", append(attrs, "publish_err", err)...)
}

// poisonRecord is the failed-stream entry of a poison item.
func poisonRecord(stream string, m *event.Message, b badItem) *event.Failed {
	f := &event.Failed{
		Reason: b.reason, Detail: fmt.Sprintf("%s seq %d index %d: %v", stream, m.Seq, b.index, b.err),
		ReceivedAt: m.Published, Stream: stream, StreamSeq: m.Seq, StreamIndex: uint32(b.index),
	}
	if f.ReceivedAt.IsZero() {
		f.ReceivedAt = time.Now()
	}
	raw := b.line
	if len(raw) > maxPoisonRaw {
		raw = raw[:maxPoisonRaw]
		f.Detail += fmt.Sprintf(" (raw cut to %d of %d bytes)", maxPoisonRaw, len(b.line))
	}
	switch {
	case len(raw) == len(b.line) && json.Valid(raw):
		f.Raw = raw
	case utf8.Valid(raw):
		f.RawText = string(raw)
	default:
		f.RawText = string([]rune(string(raw))) // invalid bytes become U+FFFD
	}
	return f
}

// describe is an error's kind for a log line, without the payload bytes
// that decoding errors quote (a time or number that did not parse).
func describe(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at offset %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %s: a JSON %s where %s is expected", typ.Field, typ.Value, typ.Type)
	}
	var idErr *keyIDError
	if errors.As(err, &idErr) {
		return idErr.Error()
	}
	return "does not decode"
}
