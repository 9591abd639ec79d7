package process_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, buffertest.LeakOptions()...)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// consumers is the few-line adapter cmd writes over the buffer: every
// (re)opened partition consumer is recreated at checkpoint + 1.
type consumers struct {
	b       *buffer.Buffer
	ackWait time.Duration
	wrap    func(process.Fetcher) process.Fetcher
	// opening, if set, runs first in every open (a test holds one up).
	opening func(ctx context.Context, p int) error
	// lastSeqHeld, if set, holds LastSeq up until it is closed (the
	// stream's leader in its election).
	lastSeqHeld <-chan struct{}
}

// directConsumers is consumers that reads partitions directly too, as
// cmd's cluster mode does.
type directConsumers struct{ consumers }

func (c directConsumers) ReadPartition(ctx context.Context, p int, from uint64, max int) ([]*event.Message, uint64, error) {
	return c.b.ReadFrom(ctx, buffer.EventsStream, buffer.Subject(p), from, max)
}

func (c directConsumers) HoldsFrom(ctx context.Context, seq uint64) (bool, error) {
	return c.b.HoldsFrom(ctx, buffer.EventsStream, seq)
}

func (c consumers) PartitionConsumer(ctx context.Context, p int, start uint64) (process.Fetcher, error) {
	if c.opening != nil {
		if err := c.opening(ctx, p); err != nil {
			return nil, err
		}
	}
	f, err := c.b.ConsumerFrom(ctx, buffer.ConsumerSpec{Stream: buffer.EventsStream, Name: "process-p" + itoa(p),
		FilterSubject: buffer.Subject(p), StartSeq: start, AckWait: c.ackWait})
	if err != nil || c.wrap == nil {
		return f, err
	}
	return c.wrap(f), nil
}

// PrepareConsumer and DiscardConsumer are cmd's too (a prepared
// consumer is never held up by opening).
func (c consumers) PrepareConsumer(ctx context.Context, p int, start uint64) (process.Fetcher, error) {
	f, err := c.b.NewIncarnation(ctx, buffer.ConsumerSpec{Stream: buffer.EventsStream, Name: "process-p" + itoa(p),
		FilterSubject: buffer.Subject(p), StartSeq: start, AckWait: c.ackWait})
	if err != nil || c.wrap == nil {
		return f, err
	}
	return c.wrap(f), nil
}

func (c consumers) DiscardConsumer(ctx context.Context, f process.Fetcher) error {
	if cons, ok := f.(*buffer.Consumer); ok {
		return cons.Delete(ctx)
	}
	return nil
}

func (c consumers) LastSeq(ctx context.Context) (uint64, error) {
	if c.lastSeqHeld != nil {
		select {
		case <-c.lastSeqHeld:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	st, err := c.b.State(ctx, buffer.EventsStream)
	return st.LastSeq, err
}

func itoa(n int) string { return strconv.Itoa(n) }

type rig struct {
	t     *testing.T
	b     *buffer.Buffer
	dir   string
	store *state.Store
	live  *state.Live
	proc  *process.Processor
	errc  chan error
	cfg   process.Config
	wrap  func(process.Fetcher) process.Fetcher
	// opening runs first in every partition open (consumers.opening).
	opening func(ctx context.Context, p int) error
	// erasures and forgets are optional (forget_test.go).
	erasures process.Erasures
	forgets  process.ForgetReporter
	// dynamic and dups: partition ownership (own_test.go).
	dynamic bool
	dups    process.DupsPublisher
	reg     *prometheus.Registry
	// direct: the processor may read partitions directly (bridge.go);
	// lastSeqHeld: consumers.lastSeqHeld.
	direct      bool
	lastSeqHeld <-chan struct{}
}

func testConfig() process.Config {
	cfg := process.DefaultConfig()
	cfg.IdleTimeout = 200 * time.Millisecond
	cfg.FetchBatch = 8
	return cfg
}

func (r *rig) start() {
	r.t.Helper()
	st, err := state.Open(statetest.Options(), r.dir, quiet, prometheus.NewRegistry())
	require.NoError(r.t, err)
	r.store, r.live = st, state.NewLive(4)
	reg := r.reg
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var cons process.Consumers = consumers{b: r.b, ackWait: time.Second, wrap: r.wrap, opening: r.opening, lastSeqHeld: r.lastSeqHeld}
	if r.direct {
		cons = directConsumers{cons.(consumers)}
	}
	p, err := process.New(r.cfg, process.Deps{Store: st, Consumers: cons,
		Sessions: r.b, Controls: r.b, Partitions: 4, Live: r.live, Erasures: r.erasures, Forgets: r.forgets,
		Dynamic: r.dynamic, Dups: r.dups},
		quiet, reg)
	require.NoError(r.t, err)
	r.proc, r.errc = p, make(chan error, 1)
	go func() { r.errc <- p.Run(context.Background()) }()
}

func (r *rig) stop() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(r.t, r.proc.Shutdown(ctx))
	require.NoError(r.t, <-r.errc)
	require.NoError(r.t, r.store.Close())
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, b: buffertest.New(t, buffertest.Config(), ""), dir: t.TempDir(), cfg: testConfig()}
	return r
}

func publish(t *testing.T, b *buffer.Buffer, evs []event.Event) {
	t.Helper()
	byPart := map[int]*event.Encoder{}
	for i := range evs {
		p := event.Partition(evs[i].UserKey(), 4)
		if byPart[p] == nil {
			byPart[p] = &event.Encoder{}
		}
		require.NoError(t, byPart[p].Append(&evs[i]))
	}
	for p, enc := range byPart {
		_, err := b.Publish(context.Background(), p, enc.Bytes(), nil)
		require.NoError(t, err)
	}
}

func eventually(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// viewing builds a realistic viewing session of user u starting at t0.
func viewing(u string, t0 time.Time) []event.Event {
	n := 0
	ev := func(typ, name string, off time.Duration, props string) event.Event {
		n++
		e := event.Event{MessageID: u + "-" + itoa(n), Source: "web", Type: typ, UserID: u,
			Timestamp: t0.Add(off), ReceivedAt: time.Now()}
		if typ == event.TypeTrack {
			e.Event = name
		} else {
			e.Name = name
		}
		if props != "" {
			e.Properties = json.RawMessage(props)
		}
		return e
	}
	pos := func(s string) string {
		return `{"content_asset_id":"ep1","program":"Dark","season":"1","episode":"1","total_length":3000,"position":` + s + `}`
	}
	return []event.Event{
		ev(event.TypePage, "home", 0, ""),
		ev(event.TypeTrack, "Search Performed", 10*time.Second, `{"query":"dark"}`),
		ev(event.TypePage, "title", 20*time.Second, ""),
		ev(event.TypeTrack, "Video Playback Started", 30*time.Second, pos("0")),
		ev(event.TypeTrack, "Video Content Playing", 40*time.Second, pos("10")),
		ev(event.TypeTrack, "Video Content Playing", 50*time.Second, pos("20")),
		ev(event.TypeTrack, "Video Playback Buffer Started", 55*time.Second, pos("25")),
		ev(event.TypeTrack, "Video Playback Buffer Completed", 60*time.Second, pos("25")),
		ev(event.TypeTrack, "Video Content Playing", 120*time.Second, pos("85")),
		ev(event.TypeTrack, "Video Content Playing", 170*time.Second, pos("135")),
		ev(event.TypeTrack, "Video Playback Paused", 180*time.Second, pos("145")),
		ev(event.TypeTrack, "Video Playback Resumed", 240*time.Second, pos("145")),
		ev(event.TypeTrack, "Video Playback Seek Completed", 245*time.Second, pos("600")),
		ev(event.TypeTrack, "Video Content Playing", 255*time.Second, pos("610")),
		ev(event.TypeTrack, "Video Playback Exited", 260*time.Second, pos("615")),
	}
}

func get(t *testing.T, h http.Handler, path string, v any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), v))
}

func TestViewingSessionThroughAPI(t *testing.T) {
	r := newRig(t)
	r.start()
	defer r.stop()
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	evs := viewing("u1", t0)
	// the same batch three times at once (RELIABILITY.md T8)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { publish(t, r.b, evs) })
	}
	wg.Wait()
	api, err := serve.NewAPI(r.store, r.live, serve.DefaultConfig(), quiet, nil)
	require.NoError(t, err)

	var sess struct {
		Sessions []serve.SessionView `json:"sessions"`
		AsOf     time.Time           `json:"as_of"`
	}
	// the partition goes idle, its watermark advances by processing time
	// and the session closes.
	eventually(t, 10*time.Second, func() bool {
		get(t, api, "/v1/users/u1/sessions?limit=5", &sess)
		return len(sess.Sessions) == 1 && sess.Sessions[0].State == "closed"
	})
	s := sess.Sessions[0]
	require.Equal(t, len(evs), s.Events, "duplicates applied once")
	require.Equal(t, 1, s.Plays)
	require.Equal(t, 1, s.Searches)
	require.Equal(t, 1, s.Pauses)
	require.Equal(t, 1, s.Seeks)
	require.Equal(t, 1, s.Rebuffers)
	require.Equal(t, 5.0, s.RebufferSeconds)
	require.Equal(t, 60.0, s.PauseSeconds)
	require.Equal(t, 3, *s.ClicksToPlay)
	require.Equal(t, 30.0, *s.TimeToPlaySeconds)
	require.Equal(t, []string{"home", "title"}, s.ScreensBeforePlay)
	// playing 30-55, 60-180, 240-260 s
	require.Equal(t, 25.0+120+20, s.WatchSeconds)

	var cw struct {
		Items []serve.CWItem `json:"items"`
	}
	get(t, api, "/v1/users/u1/continue-watching", &cw)
	require.Len(t, cw.Items, 1)
	require.Equal(t, "ep1", cw.Items[0].AssetID)
	require.Equal(t, 615.0, cw.Items[0].PositionSeconds)
	require.InDelta(t, 0.205, cw.Items[0].Progress, 0.001)

	var unknown struct {
		Items []serve.CWItem `json:"items"`
	}
	get(t, api, "/v1/users/nobody/continue-watching", &unknown)
	require.NotNil(t, unknown.Items)
	require.Empty(t, unknown.Items)

	var paths struct {
		Paths []serve.PathCount `json:"paths"`
	}
	get(t, api, "/v1/paths/top", &paths)
	require.Equal(t, []serve.PathCount{{Path: "home > title > play", Sessions: 1}}, paths.Paths)

	// the outbox relayed the closed session to the lake stream once
	eventually(t, 5*time.Second, func() bool {
		st, err := r.b.State(context.Background(), buffer.SessionsStream)
		return err == nil && st.Messages == 1
	})

	// after a restart, the same batch again changes nothing
	r.stop()
	r.start()
	publish(t, r.b, evs)
	eventually(t, 5*time.Second, func() bool {
		var ps state.Checkpoint
		_ = r.store.View(func(txn *badger.Txn) error { return readPS(txn, event.Partition("u1", 4), &ps) })
		st, _ := r.b.State(context.Background(), buffer.EventsStream)
		return ps.LastSeq == st.LastSeq
	})
	api, err = serve.NewAPI(r.store, r.live, serve.DefaultConfig(), quiet, nil)
	require.NoError(t, err)
	get(t, api, "/v1/users/u1/sessions", &sess)
	require.Len(t, sess.Sessions, 1)
	require.Equal(t, len(evs), sess.Sessions[0].Events)
}

func readPS(txn *badger.Txn, p int, ps *state.Checkpoint) error {
	cp, err := state.ReadCheckpoint(txn, p)
	*ps = cp
	return err
}

// TestRunReturnsOnHardCancel: cancelling Run's context abandons in-flight
// work and returns without a Shutdown (regression: a worker whose loop
// ended on the cancelled context waited for Shutdown, so a hard stop hung
// whenever cancellation arrived between two fetches).
func TestRunReturnsOnHardCancel(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	st, err := state.Open(statetest.Options(), t.TempDir(), quiet, nil)
	require.NoError(t, err)
	defer st.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// the hard deadline fires while a fetch comes back empty
	cancelling := func(f process.Fetcher) process.Fetcher { return cancelOnFetch{f, cancel} }
	p, err := process.New(testConfig(), process.Deps{Store: st,
		Consumers: consumers{b: b, ackWait: time.Second, wrap: cancelling}, Sessions: b, Partitions: 4},
		quiet, prometheus.NewRegistry())
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

type cancelOnFetch struct {
	process.Fetcher
	cancel context.CancelFunc
}

func (c cancelOnFetch) Fetch(context.Context, int, time.Duration) ([]*event.Message, error) {
	c.cancel()
	return nil, nil
}
