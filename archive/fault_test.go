package archive_test

import (
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/archive/s3test"
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
