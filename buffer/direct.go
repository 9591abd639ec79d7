package buffer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clickpipe/clickpipe/event"
)

// Direct reads: JetStream's batched direct get, answered by any replica of
// a stream that allows it (the local one when this node holds one) once
// that replica is in sync, with no consumer and no stream or meta leader
// involved. The sessionizer reads a partition this way while the
// partition's consumer is being created: right after a node's crash,
// creating a consumer waits for the JetStream meta group to elect a leader
// (seconds), while every surviving replica can already answer.
//
// A replica answers from what it has applied, which is a prefix of the
// stream: a lagging one returns fewer messages, never a gap.

// directReadMaxBytes bounds one direct read's answer.
const directReadMaxBytes = 8 << 20

// directGetRequest is the body of a direct get ($JS.API.DIRECT.GET.<stream>).
type directGetRequest struct {
	Seq      uint64 `json:"seq,omitempty"`
	NextFor  string `json:"next_by_subj,omitempty"`
	Batch    int    `json:"batch,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
}

// Headers a direct get adds to a stored message.
const (
	hdrDirectStream    = "Nats-Stream"
	hdrDirectSubject   = "Nats-Subject"
	hdrDirectSequence  = "Nats-Sequence"
	hdrDirectTimeStamp = "Nats-Time-Stamp"
	hdrDirectPending   = "Nats-Num-Pending"
	hdrDirectLastSeq   = "Nats-Last-Sequence"
	hdrDirectUpTo      = "Nats-UpTo-Sequence"
	// The client library's names for a status answer's code and text.
	hdrStatus      = "Status"
	hdrDescription = "Description"
)

// ErrNoDirectReplica means no replica of the stream answers direct gets
// (none in sync, or the stream does not allow them).
var ErrNoDirectReplica = errors.New("buffer: no replica answers direct reads")

// ReadFrom reads up to max messages of stream whose subject matches
// filter, from stream sequence from on, by a batched direct get. pending
// is how many more matching messages the answering replica holds after
// the last one returned. The messages are reads, not deliveries: their
// Acker does nothing and their Delivery is 0. None and no error: the
// replica holds nothing there yet.
func (b *Buffer) ReadFrom(ctx context.Context, stream, filter string, from uint64, max int) (msgs []*event.Message, pending uint64, err error) {
	if max <= 0 || from == 0 {
		return nil, 0, fmt.Errorf("buffer: direct read of %s needs from > 0 and max > 0 (from %d, max %d)", stream, from, max)
	}
	err = b.direct(ctx, stream, directGetRequest{Seq: from, NextFor: filter, Batch: max, MaxBytes: directReadMaxBytes},
		func(m *nats.Msg) (bool, error) {
			switch m.Header.Get(hdrStatus) {
			case "":
			case "204": // end of batch
				if v := m.Header.Get(hdrDirectPending); v != "" {
					pending, _ = strconv.ParseUint(v, 10, 64)
				}
				return true, nil
			case "404":
				return true, nil
			default:
				return true, directStatus(stream, m)
			}
			em, err := directMessage(m)
			if err != nil {
				return true, err
			}
			msgs = append(msgs, em)
			return false, nil
		})
	if err != nil {
		return nil, 0, err
	}
	return msgs, pending, nil
}

// HoldsFrom reports whether a replica of stream holds a message at or
// after seq, on any subject: the stream has not gone back behind seq. A
// replica that lags answers false too; ask the stream's leader then.
func (b *Buffer) HoldsFrom(ctx context.Context, stream string, seq uint64) (bool, error) {
	if seq == 0 {
		return true, nil
	}
	var held bool
	err := b.direct(ctx, stream, directGetRequest{Seq: seq, NextFor: ">"}, func(m *nats.Msg) (bool, error) {
		switch m.Header.Get(hdrStatus) {
		case "":
			held = true
			return true, nil
		case "404":
			return true, nil
		default:
			return true, directStatus(stream, m)
		}
	})
	return held, err
}

// direct sends one direct get and hands each answer to take until it says
// done (or fails, or ctx ends).
func (b *Buffer) direct(ctx context.Context, stream string, req directGetRequest, take func(*nats.Msg) (done bool, err error)) error {
	nc, err := b.conn()
	if err != nil {
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("direct read of %s: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if req.Batch > 0 {
		// A batch answers with up to Batch messages and an end marker.
		if err := sub.SetPendingLimits(req.Batch+16, directReadMaxBytes+(1<<20)); err != nil {
			return err
		}
	}
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return fmt.Errorf("direct read of %s: %w", stream, err)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("direct read of %s: %w", stream, ErrNoDirectReplica)
		}
		if err != nil {
			return fmt.Errorf("direct read of %s: %w", stream, err)
		}
		if m.Header.Get(hdrStatus) == "503" {
			return fmt.Errorf("direct read of %s: %w", stream, ErrNoDirectReplica)
		}
		done, err := take(m)
		if err != nil || done {
			return err
		}
	}
}

// conn is the buffer's own client connection, once open.
func (b *Buffer) conn() (*nats.Conn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nc == nil {
		return nil, errors.New("buffer: not open")
	}
	return b.nc, nil
}

func directStatus(stream string, m *nats.Msg) error {
	return fmt.Errorf("direct read of %s: status %s %s", stream, m.Header.Get(hdrStatus), m.Header.Get(hdrDescription))
}

// directMessage turns one direct get answer into a read message.
func directMessage(m *nats.Msg) (*event.Message, error) {
	seq, err := strconv.ParseUint(m.Header.Get(hdrDirectSequence), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("direct read: sequence header %q: %w", m.Header.Get(hdrDirectSequence), err)
	}
	at, err := time.Parse(time.RFC3339Nano, m.Header.Get(hdrDirectTimeStamp))
	if err != nil {
		return nil, fmt.Errorf("direct read: time stamp header: %w", err)
	}
	subject := m.Header.Get(hdrDirectSubject)
	hdr := m.Header
	for _, k := range []string{hdrDirectStream, hdrDirectSubject, hdrDirectSequence, hdrDirectTimeStamp,
		hdrDirectPending, hdrDirectLastSeq, hdrDirectUpTo} {
		delete(hdr, k)
	}
	if len(hdr) == 0 {
		hdr = nil
	}
	p, ok := SubjectPartition(subject)
	if !ok {
		p = -1
	}
	return &event.Message{Seq: seq, Subject: subject, Partition: p, Data: m.Data,
		Header: hdr, Published: at, Acker: noAcker{}}, nil
}

// leaderGet reads stream's message seq through the stream's leader
// ($JS.API.STREAM.MSG.GET, which JetStream answers from the leader whatever
// allow_direct says).
func (b *Buffer) leaderGet(ctx context.Context, stream string, seq uint64) (*jetstream.RawStreamMsg, error) {
	nc, err := b.conn()
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(directGetRequest{Seq: seq})
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, body)
	if err != nil {
		return nil, fmt.Errorf("reading %s sequence %d: %w", stream, seq, err)
	}
	var resp struct {
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("reading %s sequence %d: %w", stream, seq, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == jsNoMessageFound:
		return nil, jetstream.ErrMsgNotFound
	case resp.Error != nil:
		return nil, fmt.Errorf("reading %s sequence %d: %s (%d)", stream, seq, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return nil, fmt.Errorf("reading %s sequence %d: empty answer", stream, seq)
	}
	hdr, err := parseHeaderBlock(resp.Message.Header)
	if err != nil {
		return nil, fmt.Errorf("reading %s sequence %d: %w", stream, seq, err)
	}
	return &jetstream.RawStreamMsg{Subject: resp.Message.Subject, Sequence: resp.Message.Seq,
		Header: hdr, Data: resp.Message.Data, Time: resp.Message.Time}, nil
}

// jsNoMessageFound is JetStream's error code for a sequence it does not hold.
const jsNoMessageFound = 10037

// parseHeaderBlock decodes a stored header block ("NATS/1.0" and then
// "Key: value" lines, CRLF-separated), keeping the keys as they were
// written.
func parseHeaderBlock(b []byte) (nats.Header, error) {
	if len(b) == 0 {
		return nil, nil
	}
	lines := strings.Split(strings.TrimRight(string(b), "\r\n"), "\r\n")
	if !strings.HasPrefix(lines[0], "NATS/1.0") {
		return nil, fmt.Errorf("header block starts with %q", lines[0])
	}
	hdr := nats.Header{}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("header line %q", l)
		}
		hdr[k] = append(hdr[k], strings.TrimSpace(v))
	}
	return hdr, nil
}
