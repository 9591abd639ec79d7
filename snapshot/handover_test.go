package snapshot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

const parts = 4

// consumers is the adapter cmd writes over the buffer, with a durable name
// per node.
type consumers struct {
	b    *buffer.Buffer
	node string
}

func (c consumers) PartitionConsumer(ctx context.Context, p int, start uint64) (process.Fetcher, error) {
	return c.b.ConsumerFrom(ctx, buffer.ConsumerSpec{Stream: buffer.EventsStream, Name: fmt.Sprintf("process-%s-p%d", c.node, p),
		FilterSubject: buffer.Subject(p), StartSeq: start, AckWait: 5 * time.Second})
}

func (c consumers) LastSeq(ctx context.Context) (uint64, error) {
	st, err := c.b.State(ctx, buffer.EventsStream)
	return st.LastSeq, err
}

// sessionizer runs the real process.Processor of one node.
type sessionizer struct {
	proc *process.Processor
	errc chan error
}

func startSessionizer(t *testing.T, n *node, b *buffer.Buffer, name string) *sessionizer {
	t.Helper()
	cfg := process.DefaultConfig()
	cfg.IdleTimeout = time.Hour // no wall-clock watermark: state depends on the stream only
	cfg.FetchBatch = 8
	proc, err := process.New(cfg, process.Deps{Store: n.st, Consumers: consumers{b: b, node: name}, Sessions: b, Controls: b,
		Partitions: parts, Live: state.NewLive(parts)}, quiet, prometheus.NewRegistry())
	require.NoError(t, err)
	s := &sessionizer{proc: proc, errc: make(chan error, 1)}
	go func() { s.errc <- proc.Run(context.Background()) }()
	return s
}

func (s *sessionizer) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, s.proc.Shutdown(ctx))
	require.NoError(t, <-s.errc)
}

// wave publishes a viewing session for each user, several users a
// message, and returns the last sequence published to each partition.
func wave(t *testing.T, b *buffer.Buffer, users []string, t0 time.Time, last map[int]uint64) {
	t.Helper()
	enc := map[int]*event.Encoder{}
	for i, u := range users {
		p := event.Partition(u, parts)
		if enc[p] == nil {
			enc[p] = &event.Encoder{}
		}
		for _, e := range viewing(u, t0.Add(time.Duration(i)*time.Second)) {
			require.NoError(t, enc[p].Append(&e))
		}
		if i%5 == 4 || i == len(users)-1 {
			for p, e := range enc {
				seq, err := b.Publish(t.Context(), p, e.Bytes(), nil)
				require.NoError(t, err)
				last[p] = seq
			}
			enc = map[int]*event.Encoder{}
		}
	}
}

// viewing is a browse, search and playback of user u from t0.
func viewing(u string, t0 time.Time) []event.Event {
	var evs []event.Event
	add := func(typ, name string, off time.Duration, props string) {
		e := event.Event{MessageID: fmt.Sprintf("%s-%d-%d", u, t0.Unix(), len(evs)), Source: "web", Type: typ, UserID: u,
			Timestamp: t0.Add(off), ReceivedAt: t0.Add(off + time.Second)}
		if typ == event.TypeTrack {
			e.Event = name
		} else {
			e.Name = name
		}
		if props != "" {
			e.Properties = json.RawMessage(props)
		}
		evs = append(evs, e)
	}
	pos := func(s int) string {
		return fmt.Sprintf(`{"content_asset_id":"ep%d","program":"Dark","season":"1","episode":"1","total_length":3000,"position":%d}`,
			len(u)%3, s)
	}
	add(event.TypePage, "home", 0, "")
	add(event.TypeTrack, "Search Performed", 10*time.Second, `{"query":"dark"}`)
	add(event.TypeTrack, "Video Playback Started", 30*time.Second, pos(0))
	for i := range 6 {
		add(event.TypeTrack, "Video Content Playing", time.Duration(40+10*i)*time.Second, pos(10+10*i))
	}
	add(event.TypeTrack, "Video Playback Paused", 110*time.Second, pos(75))
	add(event.TypeTrack, "Video Playback Resumed", 130*time.Second, pos(75))
	add(event.TypeTrack, "Video Playback Exited", 140*time.Second, pos(85))
	return evs
}

func waitCaughtUp(t *testing.T, st *state.Store, last map[int]uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for p, seq := range last {
		for {
			cp, err := st.Position(p)
			require.NoError(t, err)
			if cp.LastSeq >= seq {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("partition %d at %d, want %d", p, cp.LastSeq, seq)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// comparable is a dump without what depends on when a key was written:
// expiries (TTLs count from the write) and the checkpoint's commit time.
func comparable(t *testing.T, st *state.Store, p int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range statetest.Dump(t, st, p) {
		value := v.Value
		if k == string(state.CheckpointKey(p)) {
			cp, err := state.DecodeCheckpoint([]byte(value))
			require.NoError(t, err)
			cp.CommittedAt = 0
			value = fmt.Sprintf("%+v", cp)
		}
		out[k] = value
	}
	return out
}

func users(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// TestHandoverOfSessionizerState snapshots the state the real sessionizer
// wrote, restores it on a second node, lets that node's sessionizer replay
// from the checkpoint + 1, and finds the same state as the first node's,
// which kept running through the same stream.
func TestHandoverOfSessionizerState(t *testing.T) {
	ctx := t.Context()
	buf := buffertest.New(t, buffertest.Config(), "")
	objs := dirStore(t)
	a, b := newNode(t, objs, ""), newNode(t, objs, "")
	t0 := time.Date(2026, 1, 10, 18, 0, 0, 0, time.UTC)
	last := map[int]uint64{}

	for p := range parts {
		require.NoError(t, a.mgr.Acquired(ctx, p, 1))
	}
	runA := startSessionizer(t, a, buf, "a")
	wave(t, buf, users("early", 60), t0, last)
	waitCaughtUp(t, a.st, last)
	a.mgr.SnapshotOwned(ctx) // while A's sessionizer runs

	for p := range parts {
		require.NoError(t, b.mgr.Acquired(ctx, p, 2))
		require.Empty(t, cmp.Diff(comparable(t, a.st, p), comparable(t, b.st, p)), "partition %d restored", p)
	}
	require.Equal(t, float64(parts), b.counter(t, "clickpipe_snapshot_restores_total", "restored"))

	runB := startSessionizer(t, b, buf, "b") // replays from each checkpoint + 1
	wave(t, buf, append(users("early", 60), users("late", 40)...), t0.Add(2*time.Hour), last)
	waitCaughtUp(t, a.st, last)
	waitCaughtUp(t, b.st, last)
	runA.stop(t)
	runB.stop(t)
	for p := range parts {
		got := comparable(t, b.st, p)
		require.Empty(t, cmp.Diff(comparable(t, a.st, p), got), "partition %d after the replay", p)
		require.Greater(t, len(got), 100, "partition %d holds real state", p)
	}
}
