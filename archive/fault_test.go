package archive_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/archive/s3test"
	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
)

// TestOutagesExactlyOnce (RELIABILITY.md T5, short tier): while events keep
// arriving, the store answers 50 % 5xx, then slowly, then resets uploads
// mid-body, then refuses connections; the archiver is killed during the
// outage and restarted. Publishing is never slowed, and afterwards every
// event is in the lake exactly once with contiguous committed ranges.
func TestOutagesExactlyOnce(t *testing.T) {
	gw := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, gw.Addr)
	b := buffertest.New(t, buffertest.Config(), "")
	cfg := s3Config(proxy.Addr, "s3://lake/cp")
	cfg.FlushInterval = 200 * time.Millisecond
	cfg.S3.Timeout = 2 * time.Second
	dedup := newMemDedup(b)

	var (
		mu      sync.Mutex
		sent    []event.Event
		slowest time.Duration
		stop    = make(chan struct{})
		done    = make(chan struct{})
		next    atomic.Int64
	)
	go func() { // the ingest side: must never wait for the archive
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(15 * time.Millisecond):
			}
			batch := make([]event.Event, 20)
			for i := range batch {
				batch[i] = makeEvent("web", int(next.Add(1)))
			}
			began := time.Now()
			publishEvents(t, b, batch, 20)
			mu.Lock()
			sent = append(sent, batch...)
			slowest = max(slowest, time.Since(began))
			mu.Unlock()
		}
	}()

	r := start(t, cfg, b, nil, dedup)
	phase := func(mode int32, d time.Duration) {
		before := proxy.Hits.Load()
		proxy.Set(mode)
		time.Sleep(d)
		if mode != s3test.FaultNone && mode != s3test.FaultRefuse {
			require.Greater(t, proxy.Hits.Load(), before, "fault %d never hit", mode)
		}
	}
	phase(s3test.FaultNone, time.Second)
	phase(s3test.FaultHalf5xx, 2*time.Second)
	phase(s3test.FaultSlow, 2*time.Second)
	phase(s3test.FaultReset, 2*time.Second)
	phase(s3test.FaultRefuse, 1500*time.Millisecond)
	r.kill() // kill -9 equivalent during the outage
	r = start(t, cfg, b, nil, dedup)
	phase(s3test.FaultRefuse, 1500*time.Millisecond)
	phase(s3test.FaultNone, time.Second)
	r.kill() // and again during catch-up
	r = start(t, cfg, b, nil, dedup)
	close(stop)
	<-done

	st, err := archive.OpenStore(t.Context(), s3Config(gw.Addr, "s3://lake/cp"))
	require.NoError(t, err)
	mu.Lock()
	total := int64(len(sent))
	mu.Unlock()
	eventually(t, 40*time.Second, func() bool { return committedRows(t, st, archive.TableEvents) == total },
		"lake did not catch up to %d events", total)
	r.shutdown(t)
	requireExactlyOnce(t, st, sent)
	requireDrained(t, b, cfg)
	require.Less(t, slowest, time.Second, "publishing was slowed by the archive")
	// The definition of done: DuckDB over versitygw's files counts every
	// acknowledged event once, through the manifests and through a glob
	// of the prefix (S3 copies published the staged objects).
	requireGlobExactlyOnce(t, filepath.Join(gw.Dir, "lake", "cp"), sent)
	if qdir, ok := duckdbDir(t); ok {
		for _, glob := range []bool{false, true} {
			s := duckdbQuery(t, qdir, filepath.Join(gw.Dir, "lake", "cp"), archive.TableEvents, glob)
			require.Equal(t, total, s.Rows, "glob %v", glob)
			require.Equal(t, total, s.DistinctIDs, "glob %v", glob)
			require.Equal(t, total, s.RowsInOwnPartition, "glob %v", glob)
		}
	}
	t.Logf("%d events, slowest publish %s, injected faults %d", total, slowest, proxy.Hits.Load())
}

// flakyConsumers fails the events table's start-up (stream state, then
// consumer creation) twice each, and its first working consumer stops
// answering after a few fetches, as a consumer can after its clustered
// stream lost the leader.
type flakyConsumers struct {
	consumers
	lastSeqFails, consumerFails atomic.Int32
	made                        atomic.Int32
}

var errFlaky = errors.New("injected: stream unavailable")

func (f *flakyConsumers) Bounds(ctx context.Context, stream string) (uint64, uint64, error) {
	if stream == buffer.EventsStream && f.lastSeqFails.Add(1) <= 2 {
		return 0, 0, errFlaky
	}
	return f.consumers.Bounds(ctx, stream)
}

func (f *flakyConsumers) Consumer(ctx context.Context, stream, name string, start uint64) (archive.Fetcher, error) {
	if stream != buffer.EventsStream {
		return f.consumers.Consumer(ctx, stream, name, start)
	}
	if f.consumerFails.Add(1) <= 2 {
		return nil, errFlaky
	}
	c, err := f.consumers.Consumer(ctx, stream, name, start)
	if err != nil || f.made.Add(1) > 1 {
		return c, err
	}
	return &dyingFetcher{Fetcher: c, left: 3}, nil
}

// dyingFetcher answers left fetches, then fails every one.
type dyingFetcher struct {
	archive.Fetcher
	left int
}

func (d *dyingFetcher) Fetch(ctx context.Context, max int, wait time.Duration) ([]*event.Message, error) {
	if d.left <= 0 {
		return nil, errFlaky
	}
	d.left--
	return d.Fetcher.Fetch(ctx, max, wait)
}

// A table writer whose stream or consumer is unavailable (at start, or a
// consumer that stops answering) starts again from its committed end: it
// never stops for good while the archiver runs, and the lake still holds
// every event exactly once. (In cluster mode a writer that stopped kept its
// lake lease and stalled the table for every node: TestKillStreamLeader.)
func TestTableRestartsAfterStreamFailures(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	root := t.TempDir()
	st, err := archive.OpenDir(root)
	require.NoError(t, err)
	var evs []event.Event
	for i := range 600 {
		evs = append(evs, makeEvent("web", i))
	}
	publishEvents(t, b, evs[:300], 10)
	cfg := testConfig()
	cfg.FetchBatch = 8
	f := &flakyConsumers{consumers: consumers{b, cfg}}
	r := startWith(t, cfg, st, archive.Deps{Consumers: f})
	go func() { time.Sleep(500 * time.Millisecond); publishEvents(t, b, evs[300:], 10) }()
	eventually(t, 30*time.Second, func() bool {
		return committedRows(t, st, archive.TableEvents) >= 600
	}, "the events table never committed its 600 rows")
	require.GreaterOrEqual(t, metric(t, r.reg, "clickpipe_archive_restarts_total", archive.TableEvents), 5.0,
		"two failed stream lookups, two failed consumers, one dead consumer")
	require.Equal(t, int32(2), f.made.Load(), "a new consumer replaced the dead one")
	require.NoError(t, r.a.Healthy())
	r.shutdown(t)
	requireGlobExactlyOnce(t, root, evs)
	assertContiguous(t, st)
}

// swallowing drops every delivery of one sequence: a delivery lost in
// flight, again and again.
type swallowing struct {
	consumers
	seq uint64
}

func (s swallowing) Consumer(ctx context.Context, stream, name string, start uint64) (archive.Fetcher, error) {
	c, err := s.consumers.Consumer(ctx, stream, name, start)
	if err != nil || stream != buffer.EventsStream {
		return c, err
	}
	return swallowFetcher{c, s.seq}, nil
}

type swallowFetcher struct {
	archive.Fetcher
	seq uint64
}

func (s swallowFetcher) Fetch(ctx context.Context, max int, wait time.Duration) ([]*event.Message, error) {
	msgs, err := s.Fetcher.Fetch(ctx, max, wait)
	return slices.DeleteFunc(msgs, func(m *event.Message) bool { return m.Seq == s.seq }), err
}

// A sequence whose deliveries never arrive is read straight from the
// stream (not skipped as a gap once AckWait has passed since start, as
// before: the lake lost the acknowledged events of one message in a
// three-node run); one deleted from the stream is a counted gap and does
// not hold the table back.
func TestHolesReadFromTheStream(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	root := t.TempDir()
	st, err := archive.OpenDir(root)
	require.NoError(t, err)
	var evs []event.Event
	for i := range 300 {
		evs = append(evs, makeEvent("web", i))
	}
	publishEvents(t, b, evs, 10) // sequences 1..30
	s, err := b.JetStream().Stream(t.Context(), buffer.EventsStream)
	require.NoError(t, err)
	m7, err := b.GetMessage(t.Context(), buffer.EventsStream, 7)
	require.NoError(t, err)
	deleted := map[string]bool{}
	require.NoError(t, event.Lines(m7.Data, func(_ int, line []byte) error {
		var e event.Event
		if err := json.Unmarshal(line, &e); err != nil {
			return err
		}
		deleted[e.MessageID] = true
		return nil
	}))
	require.NoError(t, s.DeleteMsg(t.Context(), 7))
	cfg := testConfig()
	cfg.FetchBatch = 4
	r := startWith(t, cfg, st, archive.Deps{Consumers: swallowing{consumers{b, cfg}, 12}})
	eventually(t, 20*time.Second, func() bool {
		return committedRows(t, st, archive.TableEvents) >= 290
	}, "the events table never committed past its holes")
	require.Equal(t, 1.0, metric(t, r.reg, "clickpipe_archive_sequence_gaps_total", archive.TableEvents))
	require.GreaterOrEqual(t, metric(t, r.reg, "clickpipe_archive_holes_filled_total", archive.TableEvents), 1.0)
	r.shutdown(t)
	want := slices.DeleteFunc(slices.Clone(evs), func(e event.Event) bool { return deleted[e.MessageID] })
	require.Len(t, want, 290)
	requireGlobExactlyOnce(t, root, want)
}
