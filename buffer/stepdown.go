package buffer

import (
	"context"
	"fmt"
	"time"
)

// StepDown hands every Raft leadership this node holds among the streams
// (EVENTS, FAILED, SESSIONS, DUPS, the KV buckets) and their consumers to
// a peer, before a graceful leave. A leader that just stops leaves its
// groups without a leader until the followers' election timeout (four to
// nine seconds in nats-server), during which nobody can open a consumer of
// the stream or read its state: the successors of the leaving node's
// partitions waited that long before they could start (seen as graceful
// handovers of 5–7 s in TestRollingRestart). A step-down makes a current
// follower campaign at once. It waits, up to a few seconds, until each
// stream it led has a leader again, and returns how many groups it handed
// over. Best effort (a leadership it cannot hand over is left to the
// election); a no-op on a single node.
func (b *Buffer) StepDown(ctx context.Context) (int, error) {
	b.mu.Lock()
	srv, clustered := b.srv, b.cfg.Cluster.Enabled
	b.mu.Unlock()
	if srv == nil || !clustered {
		return 0, nil
	}
	js, err := b.client()
	if err != nil {
		return 0, err
	}
	acc := srv.GlobalAccount().Name
	var led []string
	moved := 0
	names := js.StreamNames(ctx)
	for stream := range names.Name() {
		if srv.JetStreamIsStreamLeader(acc, stream) {
			if err := srv.JetStreamStepdownStream(acc, stream); err == nil {
				led = append(led, stream)
				moved++
			}
		}
		s, err := js.Stream(ctx, stream)
		if err != nil {
			continue
		}
		consumers := s.ConsumerNames(ctx)
		for c := range consumers.Name() {
			if srv.JetStreamIsConsumerLeader(acc, stream, c) && srv.JetStreamStepdownConsumer(acc, stream, c) == nil {
				moved++
			}
		}
	}
	if err := names.Err(); err != nil {
		return moved, fmt.Errorf("buffer: listing streams to step down from: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for _, stream := range led {
		for wctx.Err() == nil {
			s, err := js.Stream(wctx, stream)
			if err == nil {
				if info, err := s.Info(wctx); err == nil && info.Cluster != nil && info.Cluster.Leader != "" &&
					info.Cluster.Leader != srv.Name() {
					break
				}
			}
			select {
			case <-wctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return moved, nil
}
