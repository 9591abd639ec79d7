package archive_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
)

// faultStore wraps a store and fails or observes puts on command.
type faultStore struct {
	archive.ObjectStore
	mu       sync.Mutex
	failPut  func(key string) error
	afterPut func(key string)
}

func (f *faultStore) Put(ctx context.Context, key string, data []byte) error {
	f.mu.Lock()
	fail, after := f.failPut, f.afterPut
	f.mu.Unlock()
	if fail != nil {
		if err := fail(key); err != nil {
			return err
		}
	}
	if err := f.ObjectStore.Put(ctx, key, data); err != nil {
		return err
	}
	if after != nil {
		after(key)
	}
	return nil
}

func isManifest(key string) bool { return strings.HasPrefix(key, archive.ManifestPrefix) }

func sendEvents(n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range n {
		evs[i] = makeEvent("web", i)
	}
	return evs
}

// requireExactlyOnce checks the committed events table holds every sent id
// once and the committed ranges are contiguous.
func requireExactlyOnce(t *testing.T, st archive.ObjectStore, sent []event.Event) {
	t.Helper()
	rows, _ := readTable[archive.EventRow](t, st, archive.TableEvents)
	got := map[string]int{}
	for _, r := range rows {
		got[r.MessageID]++
	}
	for _, e := range sent {
		require.Equal(t, 1, got[e.MessageID], "copies of %s", e.MessageID)
	}
	require.Len(t, rows, len(sent))
	assertContiguous(t, st)
}

func TestCrashBeforeManifestIsRedone(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	dir, err := archive.OpenDir(t.TempDir())
	require.NoError(t, err)
	sent := sendEvents(600)
	publishEvents(t, b, sent, 25)
	dedup := newMemDedup(b)

	st := &faultStore{ObjectStore: dir, failPut: func(key string) error {
		if isManifest(key) {
			return errors.New("injected: store gone before the manifest")
		}
		return nil
	}}
	cfg := testConfig()
	cfg.AckWait = 5 * time.Second // outlives the restart below
	r := start(t, cfg, b, st, dedup)
	eventually(t, 10*time.Second, func() bool {
		keys, _ := dir.List(t.Context(), archive.StagingPrefix+"events/")
		return len(keys) > 0
	}, "no object uploaded")
	r.kill() // crash: objects staged, nothing committed, nothing acked
	staged, err := dir.List(t.Context(), archive.StagingPrefix+"events/")
	require.NoError(t, err)
	require.Zero(t, committedRows(t, dir, archive.TableEvents))
	requireGlobExactlyOnce(t, dir.Root(), nil) // nothing uncommitted is visible
	// New messages arrive while the crashed process's deliveries are still
	// outstanding: after restart they are delivered before the
	// redeliveries, which must not be skipped as "already committed".
	// Let the dead process's last pull request (1 s) expire first, so
	// these really go to the new process.
	time.Sleep(1500 * time.Millisecond)
	more := make([]event.Event, 200)
	for i := range more {
		more[i] = makeEvent("web", 600+i)
	}
	publishEvents(t, b, more, 25)
	sent = append(sent, more...)

	r2 := start(t, cfg, b, dir, dedup)
	eventually(t, 20*time.Second, func() bool { return committedRows(t, dir, archive.TableEvents) == 800 },
		"backlog not archived after restart")
	r2.shutdown(t)
	requireExactlyOnce(t, dir, sent)
	requireDrained(t, b, cfg)

	// The crashed attempt's staged objects were published under the same
	// keys or, when the retry cut the range differently, left staged
	// (never under events/, so glob readers do not see them) until
	// compaction removes them once the committed end has passed them.
	requireGlobExactlyOnce(t, dir.Root(), sent)
	statuses, err := archive.Status(t.Context(), dir)
	require.NoError(t, err)
	require.Zero(t, statuses[0].Orphans)
	require.Equal(t, int64(800), statuses[0].Rows)
	left, err := dir.List(t.Context(), archive.StagingPrefix+"events/")
	require.NoError(t, err)
	t.Logf("%d staged objects of the crash, %d left after the restart", len(staged), len(left))
	_, err = archive.Compact(t.Context(), dir, archive.TableEvents, archive.CompactOptions{}) // merges nothing
	require.NoError(t, err)
	left, err = dir.List(t.Context(), archive.StagingPrefix)
	require.NoError(t, err)
	require.Empty(t, left)
	requireExactlyOnce(t, dir, sent)
	requireGlobExactlyOnce(t, dir.Root(), sent)
}

func TestCrashAfterManifestBeforeAckIsSkipped(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	dir, err := archive.OpenDir(t.TempDir())
	require.NoError(t, err)
	sent := sendEvents(600)
	publishEvents(t, b, sent, 25)
	dedup := newMemDedup(b)

	st := &faultStore{ObjectStore: dir}
	cfg := testConfig()
	var once sync.Once
	crashed, killed := make(chan struct{}), make(chan struct{})
	st.afterPut = func(key string) {
		if strings.HasPrefix(key, archive.ManifestPrefix+archive.TableEvents) {
			// Die between commit and ack: hold the writer here until the
			// test has cancelled its context.
			once.Do(func() { close(crashed); <-killed })
		}
	}
	r := start(t, cfg, b, st, dedup)
	<-crashed
	r.hard()
	close(killed)
	r.kill()
	first := committedRows(t, dir, archive.TableEvents)
	require.Positive(t, first)

	r2 := start(t, cfg, b, dir, dedup)
	eventually(t, 20*time.Second, func() bool { return committedRows(t, dir, archive.TableEvents) == 600 },
		"backlog not archived after restart")
	// The unacked, committed messages come back after AckWait and are
	// skipped, not written again.
	time.Sleep(cfg.AckWait + time.Second)
	r2.shutdown(t)
	requireExactlyOnce(t, dir, sent)
	requireDrained(t, b, cfg)
}

func TestDedupKeepsFirstOccurrence(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	dir, err := archive.OpenDir(t.TempDir())
	require.NoError(t, err)
	all := sendEvents(15)
	batchA := all[:10]
	batchB := all[4:15] // msg-000004..9 again
	ios := []event.Event{makeEvent("ios", 1)}
	// One partition for everything, so stream order is the publish order.
	for _, list := range [][]event.Event{batchA, batchB, ios} {
		var enc event.Encoder
		for i := range list {
			require.NoError(t, enc.Append(&list[i]))
		}
		_, err := b.Publish(t.Context(), 0, enc.Bytes(), nil)
		require.NoError(t, err)
	}
	r := start(t, testConfig(), b, dir, newMemDedup(b))
	eventually(t, 10*time.Second, func() bool { return committedRows(t, dir, archive.TableEvents) == 16 },
		"want 16 rows")
	r.shutdown(t)
	rows, _ := readTable[archive.EventRow](t, dir, archive.TableEvents)
	require.Len(t, rows, 16)
	seen := map[string]int64{}
	for _, r := range rows {
		k := r.Source + "/" + r.MessageID
		_, dup := seen[k]
		require.False(t, dup, k)
		seen[k] = r.StreamSeq
	}
	require.Equal(t, int64(1), seen["web/msg-000007"], "kept the first occurrence")
	require.Equal(t, int64(2), seen["web/msg-000012"])
	require.Equal(t, int64(3), seen["ios/msg-000001"])
}

// requireDrained checks every archive consumer (its current incarnation,
// named ConsumerName(table)_<suffix>) has acked everything.
func requireDrained(t *testing.T, b *buffer.Buffer, cfg archive.Config) {
	t.Helper()
	for _, table := range archive.Tables() {
		s, err := b.JetStream().Stream(t.Context(), streamOf(table))
		require.NoError(t, err)
		found := 0
		for info := range s.ListConsumers(t.Context()).Info() {
			if !strings.HasPrefix(info.Name, archive.ConsumerName(table)+"_") {
				continue
			}
			found++
			require.Zero(t, info.NumPending+uint64(info.NumAckPending), table)
		}
		require.Equal(t, 1, found, "one incarnation of the %s consumer", table)
	}
}
