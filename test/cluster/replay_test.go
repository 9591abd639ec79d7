package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// The state checker of issue 15: per-partition state equal to a
// single-node replay of the same stream. A single clickpipe (no cluster,
// no lake) is given every message of the cluster's EVENTS stream, in
// stream order, with its subject, headers and body; since the state is a
// deterministic function of the stream (docs/design.md, "Determinism"),
// every per-user answer of the cluster's owners must equal the replay's,
// whatever the faults, handovers and snapshot restores in between.

// replayNode starts the single node and publishes the cluster's stream to
// it, read through node i; skip (if not nil) leaves out the messages it
// returns true for (the checker's negative control). It returns the
// node's query address once the node has applied everything it was given.
func (c *testCluster) replayNode(i int, skip func(jetstream.Msg) bool) string {
	c.t.Helper()
	port := freePorts(c.t, 1)[0]
	env := []string{fmt.Sprintf("CLICKPIPE_BUFFER_LISTEN=127.0.0.1:%d", port), "CLICKPIPE_INGEST_SOURCES=" + writeKey}
	for _, e := range c.env {
		if strings.HasPrefix(e, "CLICKPIPE_BUFFER_PARTITIONS=") || strings.HasPrefix(e, "CLICKPIPE_BUFFER_MAX_BYTES=") {
			env = append(env, e) // the cluster's partitioning and stream budget
		}
	}
	p := clickpipetest.StartWith(c.t, "", c.t.TempDir(), nil, env...)
	query := p.Find("ready", 60*time.Second)["query"].(string)
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port))
	require.NoError(c.t, err)
	defer nc.Close()
	// Asynchronous publishes on one connection to one server keep their
	// order; each acknowledgement is checked at the end.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	require.NoError(c.t, err)
	var futures []jetstream.PubAckFuture
	var skipped int
	var pubErr error
	err = c.eachMessage(i, func(m jetstream.Msg) {
		if pubErr != nil {
			return
		}
		if skip != nil && skip(m) {
			skipped++
			return
		}
		msg := nats.NewMsg(m.Subject())
		for k, v := range m.Headers() {
			if k != jetstream.MsgIDHeader { // unique in the cluster's stream anyway
				msg.Header[k] = v
			}
		}
		msg.Data = m.Data()
		var f jetstream.PubAckFuture
		if f, pubErr = js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute)); pubErr == nil {
			futures = append(futures, f)
		}
	})
	require.NoError(c.t, err)
	require.NoError(c.t, pubErr)
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		c.t.Fatal("replay: publishes not acknowledged within 2 minutes")
	}
	n := 0
	for _, f := range futures {
		select {
		case <-f.Ok():
			n++
		case err := <-f.Err():
			c.t.Fatalf("replay: a publish failed: %v", err)
		}
	}
	c.t.Logf("replay: %d messages of the cluster's EVENTS published to a single node (%d left out)", n, skipped)
	drained(c.t, js)
	return query
}

// drained waits until every consumer of the single node's EVENTS has
// nothing left to deliver and nothing unacknowledged: the partition
// consumers acknowledge a message only once its state is committed, so
// the node's answers are then final, and one comparison decides.
func drained(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if last = pendingReplay(js); last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replay: the single node did not apply the whole stream within 2 minutes: %s", last)
		}
	}
}

// pendingReplay says what the single node has not applied yet ("" when
// nothing).
func pendingReplay(js jetstream.JetStream) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		return err.Error()
	}
	n := 0
	infos := s.ListConsumers(ctx)
	for info := range infos.Info() {
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return fmt.Sprintf("consumer %s: %d pending, %d unacknowledged", info.Name, info.NumPending, info.NumAckPending)
		}
		n++
	}
	if err := infos.Err(); err != nil {
		return err.Error()
	}
	if n == 0 {
		return "no consumers yet"
	}
	return ""
}

// userAnswers is the normalised per-user answers that make up a user's
// serving state: sessions (less their version, which counts publications
// and so depends on batch boundaries) and Continue Watching, less the
// freshness fields (when, not what).
func userAnswers(query, user string) (string, error) {
	var out []any
	for _, path := range []string{"/sessions", "/continue-watching"} {
		a := routedGet("http://" + query + "/v1/users/" + user + path)
		if a.code != 200 {
			return "", fmt.Errorf("%s%s: %d %s", user, path, a.code, a.body)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(a.body), &doc); err != nil {
			return "", err
		}
		for _, k := range []string{"as_of", "lag_seconds", "watermark"} {
			delete(doc, k)
		}
		if ss, ok := doc["sessions"].([]any); ok {
			for _, s := range ss {
				if m, ok := s.(map[string]any); ok {
					delete(m, "version")
				}
			}
		}
		out = append(out, doc)
	}
	b, err := json.Marshal(out)
	return string(b), err
}

// stateDiff compares every user's answers through node query with the
// replay's (which has applied its whole stream), until they agree or
// within passes (the cluster's owners may still be applying the end of
// the load); it returns the last difference, "" when none.
func stateDiff(query, replay string, users []string, within time.Duration) (diff string, compared int) {
	for deadline := time.Now().Add(within); ; {
		diff, compared = "", 0
		for _, u := range users {
			got, err := userAnswers(query, u)
			if err != nil {
				diff = "cluster: " + err.Error()
				break
			}
			want, err := userAnswers(replay, u)
			if err != nil {
				diff = "replay: " + err.Error()
				break
			}
			if got != want {
				diff = fmt.Sprintf("%s:\n cluster %s\n replay  %s", u, got, want)
				break
			}
			compared++
		}
		if diff == "" || time.Now().After(deadline) {
			return diff, compared
		}
		time.Sleep(time.Second)
	}
}

// driverUsers is every user the driver sends events of.
func driverUsers() []string {
	var out []string
	for w := range 3 {
		for k := range 13 {
			out = append(out, fmt.Sprintf("user-%d-%d", w, k))
		}
	}
	return out
}

// checkReplayedState: every driver user's answers through node i equal a
// single-node replay's; and, as the checker's negative control, they do
// not equal those of a replay that left out one message.
func checkReplayedState(c *testCluster, i int) {
	c.t.Helper()
	users := driverUsers()
	diff, n := stateDiff(c.nodes[i].query, c.replayNode(i, nil), users, 60*time.Second)
	c.t.Logf("state against a single-node replay: %d users equal", n)
	require.Empty(c.t, diff, "the cluster's state differs from a single-node replay")

	left := false
	control := c.replayNode(i, func(m jetstream.Msg) bool {
		if left || m.Headers().Get(event.HeaderControl) != "" {
			return false
		}
		left = true
		return true
	})
	diff, _ = stateDiff(c.nodes[i].query, control, users, 0)
	c.t.Logf("negative control, a replay without its first message: %.200s", diff)
	require.NotEmpty(c.t, diff, "the state checker did not see a replay missing a message")
}
