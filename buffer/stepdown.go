package buffer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
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
	if srv.JetStreamIsLeader() {
		if err := b.stepDownMeta(ctx); err != nil {
			return moved, err
		}
		moved++
	}
	return moved, nil
}

// sysUser is the system-account user of a cluster node (clusterOptions).
const sysUser = "clickpipe-system"

// stepDownMeta hands the JetStream meta leadership to a peer (a
// system-account request, made through an in-process connection as this
// node's system user) and waits, up to a few seconds, until another node
// leads. The successors of a leaving meta leader otherwise wait for an
// election before they can create consumers: graceful handovers of 4–5 s
// in TestRollingRestart.
func (b *Buffer) stepDownMeta(ctx context.Context) error {
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("clickpipe-system"),
		nats.UserInfo(sysUser, b.sysPass))
	if err != nil {
		return fmt.Errorf("buffer: connecting as the system user: %w", err)
	}
	defer nc.Close()
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, "$JS.API.META.LEADER.STEPDOWN", nil)
	if err != nil {
		return fmt.Errorf("buffer: meta leader step-down: %w", err)
	}
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("buffer: meta leader step-down: %w", err)
	}
	if resp.Error != nil {
		return fmt.Errorf("buffer: meta leader step-down: %s", resp.Error.Description)
	}
	for rctx.Err() == nil {
		if info, err := srv.Jsz(nil); err == nil && info.Meta != nil && info.Meta.Leader != "" && info.Meta.Leader != srv.Name() {
			return nil
		}
		select {
		case <-rctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("buffer: no other meta leader %s after the step-down", 3*time.Second)
}
