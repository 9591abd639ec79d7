package buffer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ensureStreamsJoined is ensureStreams; in cluster mode it first waits for
// a JetStream meta leader and retries while the cluster cannot place the
// streams yet (peers still starting, an election), up to
// cluster.join_timeout. A conflicting existing stream is not retried.
func (b *Buffer) ensureStreamsJoined(ctx context.Context) error {
	if !b.cfg.Cluster.Enabled {
		return b.ensureStreams(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Cluster.JoinTimeout)
	defer cancel()
	start := time.Now()
	for attempt := 0; ; attempt++ {
		err := b.joinedOnce(ctx)
		if err == nil {
			b.log.Info("joined jetstream cluster", "node", b.cfg.Cluster.NodeName, "replicas",
				b.cfg.Cluster.StreamReplicas(), "took", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if errors.Is(err, ErrIncompatible) {
			return err
		}
		if attempt%20 == 0 {
			b.log.Info("waiting for the jetstream cluster", "node", b.cfg.Cluster.NodeName, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("joining jetstream cluster %s within cluster.join_timeout (%s): %w",
				b.cfg.Cluster.Name, b.cfg.Cluster.JoinTimeout, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (b *Buffer) joinedOnce(ctx context.Context) error {
	if !b.srv.JetStreamIsCurrent() {
		return errors.New("no jetstream meta leader yet")
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := b.js.AccountInfo(actx); err != nil {
		return fmt.Errorf("jetstream account info: %w", err)
	}
	return b.ensureStreams(actx)
}

// publishAttempt bounds one try of a replicated publish: an election
// takes a few seconds, and a retry with the same Nats-Msg-Id is harmless.
const publishAttempt = 2 * time.Second

// publishReplicated publishes msg with a Nats-Msg-Id (unless it has one)
// and retries the same message while the outcome is ambiguous (no answer
// within an attempt, no responders during an election) and ctx allows. The
// stream acknowledges only once a quorum of replicas stored the message;
// a retry of a message that was in fact stored is acknowledged as a
// duplicate with the original sequence.
func (b *Buffer) publishReplicated(ctx context.Context, js jetstream.JetStream, msg *nats.Msg) (*jetstream.PubAck, error) {
	if msg.Header.Get(jetstream.MsgIDHeader) == "" {
		msg.Header.Set(jetstream.MsgIDHeader, b.msgPrefix+strconv.FormatUint(b.msgSeq.Add(1), 10))
	}
	for {
		actx, cancel := context.WithTimeout(ctx, publishAttempt)
		ack, err := js.PublishMsg(actx, msg)
		cancel()
		if err == nil || !ambiguous(err) || ctx.Err() != nil {
			return ack, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ambiguous reports a publish error after which the message may or may
// not be stored.
func ambiguous(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}
