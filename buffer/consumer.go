package buffer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clickpipe/clickpipe/event"
)

// ConsumerSpec describes a durable pull consumer.
type ConsumerSpec struct {
	// Stream is EventsStream or FailedStream.
	Stream string
	// Name is the durable name.
	Name string
	// FilterSubject limits the consumer to one subject (a partition); empty
	// means the whole stream.
	FilterSubject string
	// StartSeq, when non-zero, makes a newly created consumer start at this
	// stream sequence (resume from a checkpoint + 1). It is ignored for a
	// consumer that already exists, which keeps its own position.
	StartSeq uint64
	// AckWait is how long a delivered message may stay unacknowledged.
	AckWait time.Duration
	// MaxAckPending bounds messages in flight.
	MaxAckPending int
	// MaxDeliver is -1 (unlimited, default) or a positive bound.
	MaxDeliver int
}

// minFetchWait is the shortest fetch wait (below it, requests would
// mostly come back empty).
const minFetchWait = 10 * time.Millisecond

// deleteIncarnationTimeout bounds the deletion of one old incarnation.
const deleteIncarnationTimeout = 2 * time.Second

// Consumer is a durable pull consumer.
type Consumer struct {
	c    jetstream.Consumer
	js   jetstream.JetStream
	spec ConsumerSpec
	// delivered is the consumer's delivery sequence when it was opened (0
	// for a new one): its next delivery is delivered + 1.
	delivered uint64
}

// DeliveredAtOpen is the delivery sequence the consumer had reached when
// it was opened; event.Message.Delivery continues from it.
func (c *Consumer) DeliveredAtOpen() uint64 { return c.delivered }

// acker settles a jetstream message; it implements event.Acker.
type acker struct{ msg jetstream.Msg }

func (a acker) Ack(ctx context.Context) error { return a.msg.DoubleAck(ctx) }
func (a acker) Nak(delay time.Duration) error { return a.msg.NakWithDelay(delay) }
func (a acker) InProgress() error             { return a.msg.InProgress() }

// Consumer creates the durable consumer if it does not exist, or checks an
// existing one is compatible (same filter subject, explicit ack).
func (b *Buffer) Consumer(ctx context.Context, spec ConsumerSpec) (*Consumer, error) {
	js, err := b.client()
	if err != nil {
		return nil, err
	}
	spec = spec.withDefaults()
	c, err := js.Consumer(ctx, spec.Stream, spec.Name)
	switch {
	case err == nil:
		info := c.CachedInfo()
		if info.Config.FilterSubject != spec.FilterSubject || info.Config.AckPolicy != jetstream.AckExplicitPolicy {
			return nil, fmt.Errorf("consumer %s: %w: filter %q ack %s, want filter %q explicit ack",
				spec.Name, ErrIncompatible, info.Config.FilterSubject, info.Config.AckPolicy, spec.FilterSubject)
		}
		if info.Config.MaxDeliver != spec.MaxDeliver || info.Config.AckWait != spec.AckWait ||
			info.Config.MaxAckPending != spec.MaxAckPending {
			cfg := info.Config
			cfg.MaxDeliver, cfg.AckWait, cfg.MaxAckPending = spec.MaxDeliver, spec.AckWait, spec.MaxAckPending
			if c, err = js.UpdateConsumer(ctx, spec.Stream, cfg); err != nil {
				return nil, fmt.Errorf("consumer %s: updating limits: %w", spec.Name, err)
			}
		}
		return &Consumer{c: c, js: js, spec: spec, delivered: c.CachedInfo().Delivered.Consumer}, nil
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("consumer %s: looking up: %w", spec.Name, err)
	}
	return create(ctx, js, spec)
}

func (s ConsumerSpec) withDefaults() ConsumerSpec {
	if s.MaxDeliver == 0 {
		s.MaxDeliver = -1
	}
	if s.AckWait == 0 {
		s.AckWait = 30 * time.Second
	}
	if s.MaxAckPending == 0 {
		s.MaxAckPending = 1000
	}
	return s
}

// create creates consumer spec (with its defaults), which does not exist.
func create(ctx context.Context, js jetstream.JetStream, spec ConsumerSpec) (*Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       spec.Name,
		FilterSubject: spec.FilterSubject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       spec.AckWait,
		MaxDeliver:    spec.MaxDeliver,
		MaxAckPending: spec.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if spec.StartSeq > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = spec.StartSeq
	}
	c, err := js.CreateConsumer(ctx, spec.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: creating: %w", spec.Name, err)
	}
	return &Consumer{c: c, js: js, spec: spec}, nil
}

// ConsumerFrom creates a fresh durable consumer at spec.StartSeq (the
// whole stream when 0) and deletes any earlier incarnation. Consumers whose
// checkpoint lives outside JetStream (Badger, the lake's manifests) use it
// at start: an existing consumer would hand out newer messages before it
// redelivers the unacknowledged older ones, which would move a checkpoint
// past them. Each incarnation gets its own name (spec.Name + "_" + a
// suffix) because the server removes a deleted consumer's files
// asynchronously, which would race a new consumer of the same name.
//
// Deleting an old incarnation is best effort: after a node's kill -9 the
// Raft group of an incarnation can be without a leader for a while, and a
// deletion that timed out failed the reopen and stalled the partition; an
// incarnation that cannot be deleted now is deleted by the next reopen
// of the same name (the listing finds every incarnation). The consumer
// keeps the stream's replicas: one replica on a node that dies would
// leave its reader (the lake's has no reopen on fetch errors) fetching
// from nothing, and an inactivity threshold would let the server delete
// the lake's consumer during a long object-store outage.
func (b *Buffer) ConsumerFrom(ctx context.Context, spec ConsumerSpec) (*Consumer, error) {
	js, err := b.client()
	if err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, spec.Stream)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: looking up stream: %w", spec.Name, err)
	}
	names := s.ConsumerNames(ctx)
	var old []string
	for n := range names.Name() {
		if n == spec.Name || strings.HasPrefix(n, spec.Name+"_") {
			old = append(old, n)
		}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("consumer %s: listing incarnations: %w", spec.Name, err)
	}
	for _, n := range old {
		dctx, cancel := context.WithTimeout(ctx, deleteIncarnationTimeout)
		err := js.DeleteConsumer(dctx, spec.Stream, n)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			b.log.Warn("old consumer incarnation not deleted; the next reopen tries again", "consumer", n, "err", err)
		}
	}
	return b.NewIncarnation(ctx, spec)
}

// NewIncarnation creates a new incarnation of consumer spec.Name at
// spec.StartSeq (named like ConsumerFrom's) and leaves the existing ones
// alone: a consumer prepared ahead of a takeover, while an older
// incarnation may still be read. The next ConsumerFrom of the name
// deletes it with the others; Delete deletes it alone.
func (b *Buffer) NewIncarnation(ctx context.Context, spec ConsumerSpec) (*Consumer, error) {
	js, err := b.client()
	if err != nil {
		return nil, err
	}
	spec = spec.withDefaults()
	// A new name: created without looking it up first (one round trip
	// fewer to a meta leader that may be in its election).
	spec.Name = spec.Name + "_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	return create(ctx, js, spec)
}

// Delete deletes the consumer (a prepared incarnation that will not be
// read); one already gone is not an error.
func (c *Consumer) Delete(ctx context.Context) error {
	err := c.js.DeleteConsumer(ctx, c.spec.Stream, c.spec.Name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("deleting consumer %s: %w", c.spec.Name, err)
	}
	return nil
}

// Fetch returns up to max messages: the pull request collects what
// arrives until max are there or wait has passed, so at low load wait is
// also how long a message waits for its reader (10 ms at least). It
// returns an empty slice, not an error, when nothing arrived in time.
func (c *Consumer) Fetch(ctx context.Context, max int, wait time.Duration) ([]*event.Message, error) {
	if wait < minFetchWait {
		wait = minFetchWait
	}
	batch, err := c.c.Fetch(max, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, fmt.Errorf("fetching from %s: %w", c.spec.Name, err)
	}
	var out []*event.Message
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			return out, fmt.Errorf("reading metadata: %w", err)
		}
		p, ok := SubjectPartition(m.Subject())
		if !ok {
			p = -1
		}
		out = append(out, &event.Message{
			Seq: meta.Sequence.Stream, Subject: m.Subject(), Partition: p, Data: m.Data(),
			Header: m.Headers(), Published: meta.Timestamp, Delivered: meta.NumDelivered,
			Delivery: meta.Sequence.Consumer, Acker: acker{m},
		})
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) &&
		!errors.Is(err, context.DeadlineExceeded) && len(out) == 0 {
		return nil, fmt.Errorf("fetching from %s: %w", c.spec.Name, err)
	}
	if ctx.Err() != nil && len(out) == 0 {
		return nil, ctx.Err()
	}
	return out, nil
}

// Pending is the number of messages not yet delivered plus those awaiting
// acknowledgement.
func (c *Consumer) Pending(ctx context.Context) (pending, ackPending uint64, err error) {
	info, err := c.c.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("consumer %s info: %w", c.spec.Name, err)
	}
	return info.NumPending, uint64(info.NumAckPending), nil
}

// GetMessage reads one message of a stream by sequence from the stream's
// leader (used by the lake's hole filling, tools and rebuild). It returns
// jetstream.ErrMsgNotFound for a missing sequence, which callers take as
// gone: unlike the client library's GetMsg, which reads from any replica
// once the stream allows direct gets (EVENTS does, direct.go), and a
// replica that lags would answer "not found" for a message it has not
// applied yet.
func (b *Buffer) GetMessage(ctx context.Context, stream string, seq uint64) (*jetstream.RawStreamMsg, error) {
	return b.leaderGet(ctx, stream, seq)
}

// ErrGone means the stream no longer holds a sequence (expired, deleted,
// or never written).
var ErrGone = errors.New("buffer: sequence not in the stream")

// Read reads one message of stream by sequence as a delivery outside any
// consumer: its Acker does nothing (the consumer that lost the delivery
// redelivers it later, and that copy is acked). An error wrapping ErrGone
// means the stream no longer holds seq.
func (b *Buffer) Read(ctx context.Context, stream string, seq uint64) (*event.Message, error) {
	m, err := b.GetMessage(ctx, stream, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: %s sequence %d", ErrGone, stream, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s sequence %d: %w", stream, seq, err)
	}
	p, ok := SubjectPartition(m.Subject)
	if !ok {
		p = -1
	}
	return &event.Message{Seq: m.Sequence, Subject: m.Subject, Partition: p, Data: m.Data,
		Header: m.Header, Published: m.Time, Acker: noAcker{}}, nil
}

// noAcker settles nothing: the message was read, not delivered.
type noAcker struct{}

func (noAcker) Ack(context.Context) error { return nil }
func (noAcker) Nak(time.Duration) error   { return nil }
func (noAcker) InProgress() error         { return nil }
