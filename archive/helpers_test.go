package archive_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/event"
)

// consumers adapts the real buffer to archive.ConsumerFactory, as cmd does.
type consumers struct {
	b   *buffer.Buffer
	cfg archive.Config
}

func (c consumers) Consumer(ctx context.Context, stream, name string, startSeq uint64) (archive.Fetcher, error) {
	return c.b.ConsumerFrom(ctx, buffer.ConsumerSpec{Stream: stream, Name: name, StartSeq: startSeq,
		AckWait: c.cfg.AckWait, MaxAckPending: c.cfg.MaxPending, MaxDeliver: -1})
}

func (c consumers) Bounds(ctx context.Context, stream string) (first, last uint64, err error) {
	st, err := c.b.State(ctx, stream)
	return st.FirstSeq, st.LastSeq, err
}

func (c consumers) Read(ctx context.Context, stream string, seq uint64) (*event.Message, error) {
	m, err := c.b.Read(ctx, stream, seq)
	if errors.Is(err, buffer.ErrGone) {
		return nil, fmt.Errorf("%w: %w", archive.ErrSequenceGone, err)
	}
	return m, err
}

// memDedup stands in for the sessionizer's duplicate lists: it reads the
// events message at seq from the stream and applies the dedup index's rule
// (the first position seen for a (source, messageId) wins) in the order
// the archive asks, which is stream order, caching each answer.
type memDedup struct {
	mu      sync.Mutex
	b       *buffer.Buffer
	first   map[string]event.Position
	answers map[uint64][]uint32
}

func newMemDedup(b *buffer.Buffer) *memDedup {
	return &memDedup{b: b, first: map[string]event.Position{}, answers: map[uint64][]uint32{}}
}

func (d *memDedup) Duplicates(_ int, seq uint64) ([]uint32, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dups, ok := d.answers[seq]; ok {
		return dups, true, nil
	}
	m, err := d.b.GetMessage(context.Background(), buffer.EventsStream, seq)
	if err != nil {
		return nil, false, err
	}
	var dups []uint32
	err = event.Lines(m.Data, func(i int, line []byte) error {
		var e event.Event
		if json.Unmarshal(line, &e) != nil {
			return nil
		}
		pos := event.Position{Seq: seq, Index: uint32(i)}
		k := e.Source + "\x00" + e.MessageID
		if p, ok := d.first[k]; !ok {
			d.first[k] = pos
		} else if p != pos {
			dups = append(dups, uint32(i))
		}
		return nil
	})
	d.answers[seq] = dups
	return dups, true, err
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("ARCHIVE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testConfig() archive.Config {
	cfg := archive.DefaultConfig()
	cfg.URL = "file:///nonexistent-overridden-by-deps-store"
	cfg.FlushInterval = 300 * time.Millisecond
	cfg.AckWait = 2 * time.Second
	cfg.RetryMin = 20 * time.Millisecond
	cfg.RetryMax = 200 * time.Millisecond
	cfg.FetchBatch = 64
	cfg.EraseInterval = time.Second
	return cfg
}

// running is an archiver started by start; stop shuts it down.
type running struct {
	a    *archive.Archiver
	reg  *prometheus.Registry
	hard context.CancelFunc
	err  chan error
}

func start(t *testing.T, cfg archive.Config, b *buffer.Buffer, st archive.ObjectStore, d archive.Deduper) *running {
	t.Helper()
	var dd archive.Deduper
	if d != nil {
		dd = d
	}
	return startWith(t, cfg, st, archive.Deps{Consumers: consumers{b, cfg}, Deduper: dd})
}

// startWith starts an archiver with deps (Store is set to st).
func startWith(t *testing.T, cfg archive.Config, st archive.ObjectStore, deps archive.Deps) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	deps.Store = st
	a, err := archive.New(cfg, deps, testLogger(t), reg)
	require.NoError(t, err)
	require.NoError(t, a.Open(t.Context()))
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, reg: reg, hard: cancel, err: make(chan error, 1)}
	go func() { r.err <- a.Run(ctx) }()
	t.Cleanup(func() { r.kill() })
	return r
}

// shutdown drains gracefully.
func (r *running) shutdown(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, r.a.Shutdown(ctx))
	require.NoError(t, <-r.err)
	r.err <- nil
	require.NoError(t, r.a.Close())
}

// kill abandons in-flight work like a crash would (nothing more is
// committed or acked).
func (r *running) kill() {
	r.hard()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.a.Shutdown(ctx)
	_ = r.a.Close()
}

func eventually(t *testing.T, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("eventually: "+msg, args...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var base = time.Date(2026, 11, 25, 17, 30, 0, 0, time.UTC)

// makeEvent builds event n; its timestamp walks across three hours.
func makeEvent(source string, n int) event.Event {
	user := fmt.Sprintf("user-%d", n%37)
	ts := base.Add(time.Duration(n) * 7 * time.Second)
	return event.Event{
		MessageID: fmt.Sprintf("msg-%06d", n), Source: source, Type: event.TypeTrack,
		Event: "Video Playback Started", UserID: user,
		Timestamp: ts, OriginalTimestamp: ts, ReceivedAt: ts.Add(time.Second), SentAt: ts.Add(500 * time.Millisecond),
		Properties: json.RawMessage(fmt.Sprintf(`{"asset_id":"t-%d","position":%d.5,"total_length":3600,"session_id":"ps-%d"}`, n%11, n, n%5)),
		Context:    json.RawMessage(`{"library":{"name":"test"}}`),
		Device:     event.Device{Platform: "web", OS: "Linux", Browser: "Firefox"},
	}
}

// publishEvents publishes events as NDJSON batches of perMsg on the user's
// partition, and returns what was sent.
func publishEvents(t *testing.T, b *buffer.Buffer, evs []event.Event, perMsg int) {
	publishEventsTB(t, b, evs, perMsg)
}

func publishEventsTB(t testing.TB, b *buffer.Buffer, evs []event.Event, perMsg int) {
	t.Helper()
	byPart := map[int][]event.Event{}
	for _, e := range evs {
		p := event.Partition(e.UserKey(), b.Partitions())
		byPart[p] = append(byPart[p], e)
	}
	for p := 0; p < b.Partitions(); p++ {
		list := byPart[p]
		for len(list) > 0 {
			n := min(perMsg, len(list))
			var enc event.Encoder
			for i := range n {
				require.NoError(t, enc.Append(&list[i]))
			}
			_, err := b.Publish(context.Background(), p, bytes.Clone(enc.Bytes()),
				map[string]string{event.HeaderCodec: event.CodecNDJSON})
			require.NoError(t, err)
			list = list[n:]
		}
	}
}

func readTable[T any](t testing.TB, st archive.ObjectStore, table string) ([]T, []archive.Object) {
	t.Helper()
	objs, err := archive.CommittedObjects(context.Background(), st, table)
	require.NoError(t, err)
	var rows []T
	for _, o := range objs {
		data, err := archive.ReadObject(context.Background(), st, o.Key)
		require.NoError(t, err)
		got, err := parquet.Read[T](bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err, o.Key)
		require.Len(t, got, int(o.Rows), o.Key)
		rows = append(rows, got...)
	}
	return rows, objs
}

func committedRows(t testing.TB, st archive.ObjectStore, table string) int64 {
	objs, err := archive.CommittedObjects(context.Background(), st, table)
	require.NoError(t, err)
	var n int64
	for _, o := range objs {
		n += o.Rows
	}
	return n
}

func readObject[T any](t testing.TB, st archive.ObjectStore, key string) ([]T, error) {
	t.Helper()
	data, err := archive.ReadObject(context.Background(), st, key)
	require.NoError(t, err)
	return parquet.Read[T](bytes.NewReader(data), int64(len(data)))
}

// metric reads one sample of a gauge or counter by name and table label;
// -1 when it has no sample yet.
func metric(t testing.TB, reg *prometheus.Registry, name, table string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "table" && l.GetValue() == table {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// globIDs reads every Parquet file under <root>/events/ the way a glob
// reader does (read_parquet('events/**/*.parquet')), manifests ignored,
// and counts rows per messageId.
func globIDs(t testing.TB, root string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	err := filepath.WalkDir(filepath.Join(root, archive.TableEvents), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rows, err := parquet.Read[archive.EventRow](bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return err
		}
		for _, r := range rows {
			ids[r.MessageID]++
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return ids
	}
	require.NoError(t, err)
	return ids
}

// requireGlobExactlyOnce: a glob reader of the events prefix sees each of
// want exactly once and nothing else.
func requireGlobExactlyOnce(t testing.TB, root string, want []event.Event) {
	t.Helper()
	got := globIDs(t, root)
	for _, e := range want {
		require.Equal(t, 1, got[e.MessageID], "glob copies of %s", e.MessageID)
	}
	require.Len(t, got, len(want), "glob reader sees ids that were not sent")
}
