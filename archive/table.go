package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/clickpipe/clickpipe/event"
)

// partRow is a row with its Hive partition.
type partRow[T any] struct {
	part string
	row  T
	key  dedupKey
}

// heldMsg is a delivered, not yet committed message and its rows.
type heldMsg[T any] struct {
	msg  *event.Message
	rows []partRow[T]
	size int
}

// tableWriter consumes one stream into one table. It runs in a single
// goroutine; only the lag snapshot is shared, under mu.
type tableWriter[T any] struct {
	a       *Archiver
	name    string
	stream  string
	decode  decodeFunc[T]
	fetcher Fetcher
	log     *slog.Logger

	committed uint64 // highest sequence committed by a manifest
	started   time.Time
	held      []heldMsg[T] // sorted by stream sequence
	heldBytes int
	opened    time.Time // when the first held message arrived
	touched   time.Time // last InProgress of the held messages
	polled    time.Time // last Pending poll

	mu      sync.Mutex
	pending uint64 // not yet delivered, from the last poll
	oldest  time.Time
	nheld   int
}

func (t *tableWriter[T]) lag() (uint64, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending + uint64(t.nheld), t.oldest
}

func (t *tableWriter[T]) publishLag() {
	t.mu.Lock()
	t.nheld = len(t.held)
	t.oldest = time.Time{}
	if len(t.held) > 0 {
		t.oldest = t.held[0].msg.Published
	}
	n, oldest := t.pending+uint64(t.nheld), t.oldest
	t.mu.Unlock()
	t.a.m.lagMessages.WithLabelValues(t.name).Set(float64(n))
	secs := 0.0
	if !oldest.IsZero() {
		secs = time.Since(oldest).Seconds()
	}
	t.a.m.lagSeconds.WithLabelValues(t.name).Set(secs)
}

// run fetches, accumulates and commits until stop is closed (final flush)
// or ctx is cancelled (abandon).
func (t *tableWriter[T]) run(ctx context.Context, stop <-chan struct{}) error {
	committed, err := t.a.loadLedger(ctx, t.name)
	if err != nil {
		return nil // cancelled before the store answered
	}
	t.committed = committed
	t.a.m.behind.WithLabelValues(t.name).Set(0)
	t.started = time.Now()
	t.a.m.committedSeq.WithLabelValues(t.name).Set(float64(t.committed))
	backoff := t.a.newBackoff()
	for {
		select {
		case <-stop:
			return t.final(ctx)
		default:
		}
		if ctx.Err() != nil {
			t.abandon()
			return nil
		}
		msgs, err := t.fetcher.Fetch(ctx, t.a.cfg.FetchBatch, t.fetchWait())
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			t.log.Warn("fetch failed", "err", err)
			backoff.sleep(ctx)
			continue
		}
		backoff.reset()
		decoded := t.decodeAll(msgs)
		for i, m := range msgs {
			if err := t.add(ctx, m, decoded[i]); err != nil {
				break // only on ctx cancellation; the loop notices
			}
		}
		t.keepAlive(ctx)
		if t.due() && t.mayCommit() {
			if err := t.flush(ctx); err != nil && ctx.Err() == nil {
				t.log.Error("flush failed", "err", err)
				backoff.sleep(ctx)
			}
		}
	}
}

func (t *tableWriter[T]) fetchWait() time.Duration {
	wait := time.Second
	if len(t.held) > 0 {
		if left := time.Until(t.opened.Add(t.a.cfg.FlushInterval)); left < wait {
			wait = max(left, 100*time.Millisecond)
		}
	}
	return wait
}

// decoded is one message's rows and undecodable items.
type decoded[T any] struct {
	rows []partRow[T]
	bad  []badItem
}

// decodeAll decodes messages in parallel, one worker per CPU.
func (t *tableWriter[T]) decodeAll(msgs []*event.Message) []decoded[T] {
	out := make([]decoded[T], len(msgs))
	workers := min(runtime.GOMAXPROCS(0), len(msgs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(msgs); i = int(next.Add(1)) - 1 {
				if msgs[i].Seq > t.committed {
					out[i].rows, out[i].bad = t.decode(msgs[i])
				}
			}
		})
	}
	wg.Wait()
	return out
}

// add takes one delivered message: already committed ones are acked at
// once, redeliveries of held ones refresh the acker, new ones are
// deduplicated in stream order and held.
func (t *tableWriter[T]) add(ctx context.Context, m *event.Message, d decoded[T]) error {
	if m.Seq <= t.committed {
		if err := m.Ack(ctx); err != nil {
			t.log.Warn("acking already committed message", "seq", m.Seq, "err", err)
		}
		return nil
	}
	i, found := slices.BinarySearchFunc(t.held, m.Seq, func(h heldMsg[T], seq uint64) int {
		return cmpSeq(h.msg.Seq, seq)
	})
	if found {
		t.held[i].msg = m
		return nil
	}
	for _, b := range d.bad {
		t.a.m.undecodable.WithLabelValues(t.name).Inc()
		t.log.Error("item does not decode; left out of the lake", "seq", m.Seq, "index", b.index, "err", b.err)
	}
	rows, err := t.dedup(ctx, d.rows)
	if err != nil {
		return err
	}
	if len(t.held) == 0 {
		t.opened = time.Now()
		t.touched = t.opened
	}
	t.held = slices.Insert(t.held, i, heldMsg[T]{msg: m, rows: rows, size: len(m.Data)})
	t.heldBytes += len(m.Data)
	return nil
}

// dedup keeps the rows that are first occurrences, retrying the Deduper
// until it answers (its answers are stable, so a retry is safe).
func (t *tableWriter[T]) dedup(ctx context.Context, rows []partRow[T]) ([]partRow[T], error) {
	d := t.a.deps.Deduper
	if d == nil || len(rows) == 0 || !rows[0].key.set {
		return rows, nil
	}
	backoff := t.a.newBackoff()
	for {
		kept, dups, err := firstOccurrences(d, rows)
		if err == nil {
			t.a.m.duplicates.WithLabelValues(t.name).Add(float64(dups))
			return kept, nil
		}
		t.log.Warn("dedup lookup failed; retrying", "err", err)
		t.keepAlive(ctx)
		if !backoff.sleep(ctx) {
			return nil, ctx.Err()
		}
	}
}

func firstOccurrences[T any](d Deduper, rows []partRow[T]) (kept []partRow[T], dups int, err error) {
	kept = rows[:0:0]
	for _, r := range rows {
		first, err := d.FirstOccurrence(r.key.source, r.key.id, r.key.pos)
		if err != nil {
			return nil, 0, fmt.Errorf("dedup %s at %s: %w", r.key.id, r.key.pos, err)
		}
		if first {
			kept = append(kept, r)
		} else {
			dups++
		}
	}
	return kept, dups, nil
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// due reports whether the open range should be flushed.
func (t *tableWriter[T]) due() bool {
	return len(t.held) > 0 && (int64(t.heldBytes) >= t.a.cfg.FlushBytes || len(t.held) >= t.a.cfg.MaxPending ||
		time.Since(t.opened) >= t.a.cfg.FlushInterval)
}

// mayCommit holds back a range that does not start right after the
// committed end (or has holes) until every message the previous process
// held has had time to be redelivered (AckWait since start); after that,
// missing sequences are gone from the stream and are reported as gaps.
func (t *tableWriter[T]) mayCommit() bool {
	missing := t.missing()
	if missing == 0 {
		return true
	}
	if time.Since(t.started) < t.a.cfg.AckWait+2*time.Second {
		return false
	}
	t.a.m.gaps.WithLabelValues(t.name).Add(float64(missing))
	t.log.Error("stream sequences missing before or inside the range; they expired or were deleted before archiving",
		"committed", t.committed, "first", t.held[0].msg.Seq, "last", t.held[len(t.held)-1].msg.Seq, "missing", missing)
	return true
}

// missing counts sequences absent between the committed end and the last
// held message. A fresh lake has no expected start.
func (t *tableWriter[T]) missing() uint64 {
	first, last := t.held[0].msg.Seq, t.held[len(t.held)-1].msg.Seq
	n := (last - first + 1) - uint64(len(t.held))
	if t.committed > 0 {
		n += first - t.committed - 1
	} else if first != 1 && time.Since(t.started) < t.a.cfg.AckWait+2*time.Second {
		n++ // not known yet whether earlier messages are still to come
	}
	return n
}

// keepAlive marks held messages in progress well before AckWait and polls
// the consumer's pending count for the lag metric.
func (t *tableWriter[T]) keepAlive(ctx context.Context) {
	now := time.Now()
	if len(t.held) > 0 && now.Sub(t.touched) >= t.a.cfg.AckWait/3 {
		for _, h := range t.held {
			_ = h.msg.InProgress()
		}
		t.touched = now
	}
	if p, ok := t.fetcher.(pendingCounter); ok && now.Sub(t.polled) >= 2*time.Second {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		pending, _, err := p.Pending(pctx)
		cancel()
		if err == nil {
			t.mu.Lock()
			t.pending = pending
			t.mu.Unlock()
		}
		t.polled = now
	}
	t.publishLag()
}

// flush writes the open range: one object per partition, then the
// manifest, then acks. Uploads retry forever; only ctx ends them.
func (t *tableWriter[T]) flush(ctx context.Context) error {
	first, last := t.held[0].msg.Seq, t.held[len(t.held)-1].msg.Seq
	parts := map[string][]T{}
	for _, h := range t.held {
		for _, r := range h.rows {
			parts[r.part] = append(parts[r.part], r.row)
		}
	}
	names := make([]string, 0, len(parts))
	for p := range parts {
		names = append(names, p)
	}
	sort.Strings(names)
	man := Manifest{Version: 1, Table: t.name, Stream: t.stream, FirstSeq: first, LastSeq: last,
		Messages: len(t.held), Created: time.Now().UTC()}
	for _, p := range names {
		key := objectKey(t.name, p, first, last)
		data, err := encodeParquet(parts[p], t.a.cfg.RowGroupRows, first, last)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", key, err) // a schema bug: not retried
		}
		if err := t.put(ctx, key, data); err != nil {
			return err
		}
		n := int64(len(parts[p]))
		man.Objects = append(man.Objects, Object{Key: key, Partition: p, Rows: n, Bytes: int64(len(data))})
		man.Rows += n
	}
	body, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding manifest: %w", err)
	}
	if err := t.put(ctx, manifestKey(t.name, first, last), body); err != nil {
		return err
	}
	t.committed = last
	t.a.m.committedSeq.WithLabelValues(t.name).Set(float64(last))
	t.a.m.ranges.WithLabelValues(t.name).Inc()
	t.a.m.rows.WithLabelValues(t.name).Add(float64(man.Rows))
	t.ackAll(ctx)
	t.log.Debug("range committed", "first", first, "last", last, "rows", man.Rows, "objects", len(man.Objects))
	return nil
}

func (t *tableWriter[T]) ackAll(ctx context.Context) {
	const ackers = 8 // acks wait for the server; overlap the round trips
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(ackers, len(t.held)) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(t.held); i = int(next.Add(1)) - 1 {
				if err := t.held[i].msg.Ack(ctx); err != nil {
					// Committed already: a redelivery is skipped as at or
					// below the committed end.
					t.log.Warn("acking committed message", "seq", t.held[i].msg.Seq, "err", err)
				}
			}
		})
	}
	wg.Wait()
	t.held, t.heldBytes = t.held[:0], 0
	t.publishLag()
}

// put uploads with capped exponential backoff until it succeeds or ctx
// ends, keeping held messages alive meanwhile.
func (t *tableWriter[T]) put(ctx context.Context, key string, data []byte) error {
	backoff := t.a.newBackoff()
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := t.a.store.Put(ctx, key, data)
		t.a.m.uploadSeconds.WithLabelValues(t.name).Observe(time.Since(start).Seconds())
		if err == nil {
			t.a.m.objects.WithLabelValues(t.name).Inc()
			t.a.m.bytes.WithLabelValues(t.name).Add(float64(len(data)))
			if attempt > 1 {
				t.a.m.behind.WithLabelValues(t.name).Set(0)
				t.log.Info("object store reachable again", "key", key, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t.a.m.uploadErrors.WithLabelValues(t.name).Inc()
		t.a.m.behind.WithLabelValues(t.name).Set(1)
		t.log.Warn("upload failed; archive is behind, events wait in the buffer", "key", key,
			"attempt", attempt, "err", err)
		t.keepAlive(ctx)
		if !backoff.sleep(ctx) {
			return ctx.Err()
		}
	}
}

// final commits the open range during Shutdown, or abandons it when it may
// not be committed yet or ctx ends first.
func (t *tableWriter[T]) final(ctx context.Context) error {
	if len(t.held) == 0 {
		return nil
	}
	if t.missing() > 0 {
		t.abandon()
		return nil
	}
	if err := t.flush(ctx); err != nil {
		t.abandon()
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
		return fmt.Errorf("final flush of %s: %w", t.name, err)
	}
	return nil
}

// abandon leaves the open range uncommitted; the buffer redelivers it.
func (t *tableWriter[T]) abandon() {
	if len(t.held) > 0 {
		t.log.Info("open range abandoned uncommitted; the buffer redelivers it",
			"first", t.held[0].msg.Seq, "last", t.held[len(t.held)-1].msg.Seq)
	}
	t.held, t.heldBytes = nil, 0
}

// encodeParquet writes rows as one Parquet file.
func encodeParquet[T any](rows []T, rowGroupRows int64, first, last uint64) ([]byte, error) {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[T](&buf, parquet.MaxRowsPerRowGroup(rowGroupRows),
		parquet.KeyValueMetadata("clickpipe.range", rangeName(first, last)))
	if _, err := w.Write(rows); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
