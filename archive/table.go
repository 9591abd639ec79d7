package archive

import (
	"bytes"
	"cmp"
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
	owner   rowOwner[T] // whose data a row is (erasure)
	fetcher Fetcher
	log     *slog.Logger

	// stop is run's stop channel: a dedup wait gives up when it closes.
	stop <-chan struct{}
	// committed is the highest sequence committed by a manifest (written
	// by the committer); handed the highest handed to the committer.
	committed atomic.Uint64
	handed    uint64
	commits   chan []heldMsg[T]
	held      []heldMsg[T] // sorted by stream sequence
	gone      goneSeqs     // holes of held the stream no longer has
	heldBytes int
	opened    time.Time // when the first held message arrived
	touched   time.Time // last InProgress of the held messages
	polled    time.Time // last Pending poll

	// created is when the writer was made; consuming is set once its
	// ledger is read and its consumer exists.
	created   atomic.Int64 // unix nanoseconds
	consuming atomic.Bool
	// waiting is set while another node holds the table's lake lease;
	// check, when set, proves this node's lease before a manifest write.
	waiting atomic.Bool
	check   func(context.Context) error

	mu         sync.Mutex
	progressed time.Time // last commit, or last moment with nothing to archive
	pending    uint64    // not yet delivered, from the last poll
	heldOldest time.Time
	nheld      int
	inflight   []heldMsg[T] // the range the committer works on
}

func (t *tableWriter[T]) lag() (uint64, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	oldest := t.heldOldest
	if len(t.inflight) > 0 {
		oldest = t.inflight[0].msg.Published
	}
	return t.pending + uint64(t.nheld) + uint64(len(t.inflight)), oldest
}

// noteHeld publishes the run loop's held range for Lag.
func (t *tableWriter[T]) noteHeld() {
	t.mu.Lock()
	t.nheld = len(t.held)
	t.heldOldest = time.Time{}
	if len(t.held) > 0 {
		t.heldOldest = t.held[0].msg.Published
	}
	t.mu.Unlock()
	t.setLagMetrics()
}

// stalled reports a table that has had work for longer than after without
// committing any of it (zero after: never).
func (t *tableWriter[T]) stalled(after time.Duration) error {
	if t.waiting.Load() {
		t.a.m.stalled.WithLabelValues(t.name).Set(0)
		return nil
	}
	if c := t.created.Load(); after > 0 && !t.consuming.Load() && c != 0 && time.Since(time.Unix(0, c)) >= after {
		t.a.m.stalled.WithLabelValues(t.name).Set(1)
		return fmt.Errorf("archive table %s has not started for %s (object store or stream unreachable)",
			t.name, time.Since(time.Unix(0, c)).Round(time.Second))
	}
	n, _ := t.lag()
	t.mu.Lock()
	since := t.progressed
	t.mu.Unlock()
	if after <= 0 || n == 0 || since.IsZero() || time.Since(since) < after {
		t.a.m.stalled.WithLabelValues(t.name).Set(0)
		return nil
	}
	t.a.m.stalled.WithLabelValues(t.name).Set(1)
	return fmt.Errorf("archive table %s has not advanced for %s (committed through %d, %d messages waiting)",
		t.name, time.Since(since).Round(time.Second), t.committed.Load(), n)
}

// noteProgress records that the table committed or has nothing to do.
func (t *tableWriter[T]) noteProgress() {
	t.mu.Lock()
	t.progressed = time.Now()
	t.mu.Unlock()
}

func (t *tableWriter[T]) setLagMetrics() {
	n, oldest := t.lag()
	if n == 0 {
		t.noteProgress()
	}
	t.a.m.lagMessages.WithLabelValues(t.name).Set(float64(n))
	secs := 0.0
	if !oldest.IsZero() {
		secs = time.Since(oldest).Seconds()
	}
	t.a.m.lagSeconds.WithLabelValues(t.name).Set(secs)
}

// run fetches, accumulates and commits until stop is closed (final flush)
// or ctx is cancelled (abandon). It returns an error when it cannot start
// or its consumer stays unusable; the caller starts it again.
func (t *tableWriter[T]) run(ctx context.Context, stop <-chan struct{}) error {
	t.stop = stop
	committed, err := t.a.loadLedger(ctx, t.name)
	if err != nil {
		return nil // cancelled before the store answered
	}
	if _, last, err := t.a.deps.Consumers.Bounds(ctx, t.stream); err != nil {
		return fmt.Errorf("archive: stream state of %s: %w", t.stream, err)
	} else if last < committed {
		err := fmt.Errorf("%w: table %s committed through %d, stream %s ends at %d", ErrSequenceRegression, t.name, committed, t.stream, last)
		t.log.Error("refusing to archive", "table", t.name, "err", err)
		t.a.m.regression.WithLabelValues(t.name).Set(1)
		t.a.mu.Lock()
		t.a.refused = append(t.a.refused, err)
		t.a.mu.Unlock()
		select { // refuse loudly, never skip: wait for the end
		case <-stop:
		case <-ctx.Done():
		}
		return nil
	}
	t.a.m.regression.WithLabelValues(t.name).Set(0)
	if t.fetcher, err = t.a.deps.Consumers.Consumer(ctx, t.stream, ConsumerName(t.name), committed+1); err != nil {
		return fmt.Errorf("archive: consumer for %s: %w", t.name, err)
	}
	t.committed.Store(committed)
	t.handed = committed
	t.a.m.behind.WithLabelValues(t.name).Set(0)
	t.noteProgress()
	t.consuming.Store(true)
	t.a.m.committedSeq.WithLabelValues(t.name).Set(float64(committed))
	// One committer uploads and acks range N while this loop fetches and
	// decodes range N+1; ranges are committed strictly in order.
	t.commits = make(chan []heldMsg[T])
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		t.committer(ctx)
	}()
	defer func() {
		close(t.commits)
		<-committerDone
	}()
	backoff := t.a.newBackoff()
	var failingSince time.Time
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
			if failingSince.IsZero() {
				failingSince = time.Now()
			} else if time.Since(failingSince) >= t.a.cfg.AckWait/2 {
				// A consumer can stay unusable after its stream lost a
				// leader (clustered buffer): after AckWait/2 of failures,
				// start again with a new one from the committed end (the
				// open range is redelivered).
				t.abandon()
				t.consuming.Store(false)
				return fmt.Errorf("archive: fetches from %s failing for %s: %w", t.stream, time.Since(failingSince).Round(time.Second), err)
			}
			t.log.Warn("fetch failed", "err", err)
			backoff.sleep(ctx)
			continue
		}
		failingSince = time.Time{}
		backoff.reset()
		began := time.Now()
		decoded := t.decodeAll(msgs)
		for i, m := range msgs {
			if err := t.add(ctx, m, decoded[i]); err != nil {
				break // cancelled, or draining past the sessionizer; the loop notices
			}
		}
		t.keepAlive(ctx)
		if t.due() && t.mayCommit(ctx) {
			t.handoff(ctx)
		}
		if p := t.a.deps.Pacer; p != nil && len(msgs) > 0 {
			p.Pace(ctx, time.Since(began))
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
				if msgs[i].Seq > t.handed && msgs[i].Header[event.HeaderControl] == nil {
					out[i].rows, out[i].bad = t.decode(msgs[i]) // control messages hold no rows
				}
			}
		})
	}
	wg.Wait()
	return out
}

// add takes one delivered message: already committed ones are acked at
// once, redeliveries of ones the committer works on are dropped (it acks
// the first delivery), redeliveries of held ones refresh the acker, new
// ones are deduplicated in stream order and held.
func (t *tableWriter[T]) add(ctx context.Context, m *event.Message, d decoded[T]) error {
	if m.Seq <= t.committed.Load() {
		if err := m.Ack(ctx); err != nil {
			t.log.Warn("acking already committed message", "seq", m.Seq, "err", err)
		}
		return nil
	}
	if m.Seq <= t.handed {
		return nil
	}
	i, found := slices.BinarySearchFunc(t.held, m.Seq, func(h heldMsg[T], seq uint64) int {
		return cmp.Compare(h.msg.Seq, seq)
	})
	if found {
		t.held[i].msg = m
		return nil
	}
	for _, b := range d.bad {
		t.poison(ctx, m, b)
	}
	rows, err := t.dedup(ctx, m, d.rows)
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

// dedup drops the rows the sessionizer found to be duplicates, waiting
// until it has applied the message (polling every dedupPoll; lookup
// errors back off). Its answers are stable, so a retry is safe.
func (t *tableWriter[T]) dedup(ctx context.Context, m *event.Message, rows []partRow[T]) ([]partRow[T], error) {
	d := t.a.deps.Deduper
	if d == nil || len(rows) == 0 || !rows[0].key.set {
		return rows, nil
	}
	backoff := t.a.newBackoff()
	wait := time.NewTimer(0)
	defer wait.Stop()
	<-wait.C
	for waited := 0; ; waited++ {
		dups, applied, err := d.Duplicates(m.Partition, m.Seq)
		switch {
		case err != nil:
			// A store error may dump the key it failed on, which holds
			// the messageId: log a bounded prefix only.
			t.log.Warn("dedup lookup failed; retrying", "err", truncate(err.Error(), 200))
			t.keepAlive(ctx)
			if !backoff.sleep(ctx) {
				return nil, ctx.Err()
			}
			continue
		case applied:
			kept := dropLines(rows, dups)
			t.a.m.duplicates.WithLabelValues(t.name).Add(float64(len(rows) - len(kept)))
			return kept, nil
		}
		if waited%100 == 99 {
			t.keepAlive(ctx)
		}
		wait.Reset(dedupPoll)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.stop:
			// Draining: the sessionizer stopped before applying this
			// message. It stays unacknowledged and comes back after a
			// restart; what is held is committed by the final flush.
			return nil, errDraining
		case <-wait.C:
		}
	}
}

var errDraining = errors.New("archive: draining before the sessionizer applied the message")

// dedupPoll is how often the archive asks whether the sessionizer has
// applied a message it holds.
const dedupPoll = 20 * time.Millisecond

// dropLines keeps the rows whose line index is not in dups (ascending).
func dropLines[T any](rows []partRow[T], dups []uint32) []partRow[T] {
	if len(dups) == 0 {
		return rows
	}
	kept := rows[:0:0]
	for _, r := range rows {
		if _, dup := slices.BinarySearch(dups, r.key.pos.Index); !dup {
			kept = append(kept, r)
		}
	}
	return kept
}

// due reports whether the open range should be flushed.
func (t *tableWriter[T]) due() bool {
	return len(t.held) > 0 && (int64(t.heldBytes) >= t.a.cfg.FlushBytes || len(t.held) >= t.a.cfg.MaxPending ||
		time.Since(t.opened) >= t.a.cfg.FlushInterval)
}

// mayCommit lets a range commit only when every sequence between the
// committed end and its last message is held or known to be gone. One
// consumer delivers in stream order, so a hole is a delivery lost in
// flight (a fetch cut by a leader change, a process that held it and
// died): its redelivery would come only after AckWait, so the hole is read
// straight from the stream instead.
func (t *tableWriter[T]) mayCommit(ctx context.Context) bool {
	if t.missing() == 0 {
		return true
	}
	return t.fillHoles(ctx) && t.missing() == 0
}

// missing counts sequences absent between the committed end and the last
// held message and not known to be gone.
func (t *tableWriter[T]) missing() uint64 {
	first, last := t.held[0].msg.Seq, t.held[len(t.held)-1].msg.Seq
	n := (last - first + 1) - uint64(len(t.held)) + (first - t.handed - 1)
	return n - min(n, t.gone.count(t.handed))
}

// fillHoles reads each missing sequence of the open range from the stream
// and holds it; the ones the stream no longer holds (below its first
// sequence, or deleted) are recorded as gone, counted as gaps and logged.
// It reports whether every hole was settled; a failed read (the stream
// unavailable) leaves the rest for the next attempt.
func (t *tableWriter[T]) fillHoles(ctx context.Context) bool {
	streamFirst, _, err := t.a.deps.Consumers.Bounds(ctx, t.stream)
	if err != nil {
		t.log.Warn("reading the stream's bounds to settle holes in the open range", "err", err)
		return false
	}
	var holes [][2]uint64
	prev := t.handed
	for _, h := range t.held {
		if h.msg.Seq > prev+1 {
			holes = append(holes, [2]uint64{prev + 1, h.msg.Seq - 1})
		}
		prev = h.msg.Seq
	}
	var filled, gone uint64
	defer func() {
		if filled > 0 {
			t.a.m.holesFilled.WithLabelValues(t.name).Add(float64(filled))
			t.log.Info("read sequences missing from the open range straight from the stream (deliveries lost in flight)",
				"filled", filled)
		}
		if gone > 0 {
			t.a.m.gaps.WithLabelValues(t.name).Add(float64(gone))
			t.log.Error("stream sequences missing before or inside the range; they expired or were deleted before archiving",
				"committed", t.handed, "first", t.held[0].msg.Seq, "last", t.held[len(t.held)-1].msg.Seq, "missing", gone)
		}
	}()
	for _, h := range holes {
		lo, hi := h[0], h[1]
		if lo < streamFirst {
			below := min(hi, streamFirst-1)
			gone += t.gone.below(below, t.handed)
			lo = below + 1
		}
		for seq := lo; seq <= hi; seq++ {
			if t.gone.has(seq) {
				continue
			}
			m, err := t.a.deps.Consumers.Read(ctx, t.stream, seq)
			if errors.Is(err, ErrSequenceGone) {
				t.gone.add(seq)
				gone++
				continue
			}
			if err != nil {
				t.log.Warn("reading a sequence missing from the open range; retrying at the next flush", "seq", seq, "err", err)
				return false
			}
			if err := t.add(ctx, m, t.decodeAll([]*event.Message{m})[0]); err != nil {
				return false
			}
			filled++
		}
	}
	return true
}

// goneSeqs are the sequences of the open range the stream no longer holds:
// all through through, and the single ones in seqs (deleted messages).
type goneSeqs struct {
	through uint64
	seqs    map[uint64]struct{}
}

// below records every sequence up to seq as gone and returns how many
// above handed were not recorded yet.
func (g *goneSeqs) below(seq, handed uint64) uint64 {
	from := max(g.through, handed)
	if seq <= from {
		return 0
	}
	g.through = seq
	var n uint64
	for s := range g.seqs {
		if s <= seq {
			delete(g.seqs, s)
			n++
		}
	}
	return seq - from - n
}

func (g *goneSeqs) add(seq uint64) {
	if g.seqs == nil {
		g.seqs = map[uint64]struct{}{}
	}
	g.seqs[seq] = struct{}{}
}

func (g *goneSeqs) has(seq uint64) bool {
	_, ok := g.seqs[seq]
	return ok || seq <= g.through
}

// count is how many sequences above handed are recorded as gone.
func (g *goneSeqs) count(handed uint64) uint64 {
	n := uint64(len(g.seqs))
	if g.through > handed {
		n += g.through - handed
	}
	return n
}

func (g *goneSeqs) reset() { *g = goneSeqs{} }

// keepAlive marks held messages in progress well before AckWait and polls
// the consumer's pending count for the lag metric.
func (t *tableWriter[T]) keepAlive(ctx context.Context) {
	now := time.Now()
	t.touch(t.held, &t.touched)
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
	t.noteHeld()
}

// touch marks msgs in progress when a third of AckWait passed since *last.
func (t *tableWriter[T]) touch(msgs []heldMsg[T], last *time.Time) {
	now := time.Now()
	if len(msgs) == 0 || now.Sub(*last) < t.a.cfg.AckWait/3 {
		return
	}
	for _, h := range msgs {
		_ = h.msg.InProgress()
	}
	*last = now
}

// handoff passes the held range to the committer, keeping it alive while
// the committer is still busy with the previous one.
func (t *tableWriter[T]) handoff(ctx context.Context) {
	tick := time.NewTicker(t.a.cfg.AckWait / 6)
	defer tick.Stop()
	for {
		select {
		case t.commits <- t.held:
			t.handed = t.held[len(t.held)-1].msg.Seq
			t.held, t.heldBytes = nil, 0
			t.gone.reset()
			t.noteHeld()
			return
		case <-tick.C:
			t.touch(t.held, &t.touched)
		case <-ctx.Done():
			return
		}
	}
}

// committer commits the ranges handed to it in order and, between them,
// applies pending erasures to the committed objects (so a rewrite never
// races a flush of this table).
func (t *tableWriter[T]) committer(ctx context.Context) {
	var tick <-chan time.Time
	if t.a.deps.Erasures != nil {
		ticker := time.NewTicker(t.a.cfg.EraseInterval)
		defer ticker.Stop()
		tick = ticker.C
		t.erase(ctx) // requests left by an earlier process
	}
	for {
		select {
		case b, ok := <-t.commits:
			if !ok {
				return
			}
			t.commit(ctx, b)
		case <-tick:
			t.erase(ctx)
		}
	}
}

// erase applies the pending deletion requests to the committed objects; a
// failure (object store down) is retried at the next tick.
func (t *tableWriter[T]) erase(ctx context.Context) {
	if err := eraseTable(ctx, t.a, t.name, t.owner); err != nil && ctx.Err() == nil {
		t.log.Warn("applying erasures to the lake failed; retrying", "err", err,
			"retry_in", t.a.cfg.EraseInterval)
	}
}

// commit writes one range and acks it, retrying until it succeeds or ctx
// ends (then the range is abandoned and redelivered later).
func (t *tableWriter[T]) commit(ctx context.Context, b []heldMsg[T]) {
	t.mu.Lock()
	t.inflight = b
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.inflight = nil
		t.mu.Unlock()
		t.setLagMetrics()
	}()
	backoff := t.a.newBackoff()
	for ctx.Err() == nil {
		err := t.flush(ctx, b)
		if err == nil {
			return
		}
		if ctx.Err() == nil {
			t.log.Error("flush failed; retrying", "err", err)
			backoff.sleep(ctx)
		}
	}
	t.log.Info("range abandoned uncommitted; the buffer redelivers it",
		"first", b[0].msg.Seq, "last", b[len(b)-1].msg.Seq)
}

// flush writes a range: one object per partition, then the manifest,
// then acks. Uploads retry forever; only ctx ends them.
func (t *tableWriter[T]) flush(ctx context.Context, held []heldMsg[T]) error {
	first, last := held[0].msg.Seq, held[len(held)-1].msg.Seq
	t.dropErased(held)
	counts := map[string]int{}
	for _, h := range held {
		for _, r := range h.rows {
			counts[r.part]++
		}
	}
	// Rows are large structs: size each partition once instead of
	// growing it by copies (profile of a burst: 6 % of the server).
	parts := make(map[string][]T, len(counts))
	for p, n := range counts {
		parts[p] = make([]T, 0, n)
	}
	for _, h := range held {
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
		Messages: len(held), Created: time.Now().UTC()}
	for _, p := range names {
		key := objectKey(t.name, p, first, last)
		data, err := encodeParquet(parts[p], t.a.cfg.RowGroupRows, first, last)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", key, err) // a schema bug: not retried
		}
		if err := t.put(ctx, t.a.stageKey(key), data, held); err != nil {
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
	t.a.crash.at("archive-before-manifest")
	if t.check != nil {
		if err := t.check(ctx); err != nil {
			t.a.m.fenced.WithLabelValues(t.name).Inc()
			return fmt.Errorf("%w: range %d-%d: %w", ErrFenced, first, last, err)
		}
	}
	if err := t.put(ctx, manifestKey(t.name, first, last), body, held); err != nil {
		return err
	}
	t.a.crash.at("archive-before-publish")
	if err := t.retry(ctx, "publishing", manifestKey(t.name, first, last), held, func() error {
		return t.a.publish(ctx, man)
	}); err != nil {
		return err
	}
	t.committed.Store(last)
	t.noteProgress()
	t.a.m.committedSeq.WithLabelValues(t.name).Set(float64(last))
	t.a.m.ranges.WithLabelValues(t.name).Inc()
	t.a.m.rows.WithLabelValues(t.name).Add(float64(man.Rows))
	t.ackAll(ctx, held)
	t.log.Debug("range committed", "first", first, "last", last, "rows", man.Rows, "objects", len(man.Objects))
	return nil
}

// dropErased leaves the rows of erased users out of a range.
func (t *tableWriter[T]) dropErased(held []heldMsg[T]) {
	e := t.a.deps.Erasures
	if e == nil {
		return
	}
	drop := erasedBy(t.owner, e.ErasedEvent)
	n := 0
	for i := range held {
		rows := held[i].rows[:0]
		for _, r := range held[i].rows {
			if drop(&r.row) {
				n++
				continue
			}
			rows = append(rows, r)
		}
		held[i].rows = rows
	}
	if n > 0 {
		t.a.m.erasedRows.WithLabelValues(t.name).Add(float64(n))
	}
}

func (t *tableWriter[T]) ackAll(ctx context.Context, held []heldMsg[T]) {
	const ackers = 8 // acks wait for the server; overlap the round trips
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(ackers, len(held)) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(held); i = int(next.Add(1)) - 1 {
				if err := held[i].msg.Ack(ctx); err != nil {
					// Committed already: a redelivery is skipped as at or
					// below the committed end.
					t.log.Warn("acking committed message", "seq", held[i].msg.Seq, "err", err)
				}
			}
		})
	}
	wg.Wait()
}

// put uploads with capped exponential backoff until it succeeds or ctx
// ends, keeping the range's messages alive meanwhile.
func (t *tableWriter[T]) put(ctx context.Context, key string, data []byte, held []heldMsg[T]) error {
	return t.retry(ctx, "upload", key, held, func() error {
		start := time.Now()
		err := t.a.store.Put(ctx, key, data)
		t.a.m.uploadSeconds.WithLabelValues(t.name).Observe(time.Since(start).Seconds())
		if err == nil {
			t.a.m.objects.WithLabelValues(t.name).Inc()
			t.a.m.bytes.WithLabelValues(t.name).Add(float64(len(data)))
		}
		return err
	})
}

// retry runs op with capped exponential backoff until it succeeds or ctx
// ends, keeping the range's messages alive meanwhile.
func (t *tableWriter[T]) retry(ctx context.Context, what, key string, held []heldMsg[T], op func() error) error {
	backoff := t.a.newBackoff()
	touched := time.Now()
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil {
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
		t.log.Warn(what+" failed; archive is behind, events wait in the buffer", "key", key,
			"attempt", attempt, "err", err)
		t.touch(held, &touched)
		t.setLagMetrics()
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
	if !t.mayCommit(ctx) {
		t.abandon()
		return nil
	}
	t.handoff(ctx) // run's deferred close waits for the commit
	t.abandon()    // no-op unless ctx ended first
	return nil
}

func (t *tableWriter[T]) tableName() string { return t.name }

func (t *tableWriter[T]) fence(check func(context.Context) error) { t.check = check }

func (t *tableWriter[T]) standby(on bool) {
	t.waiting.Store(on)
	if on {
		t.consuming.Store(false)
		t.mu.Lock()
		t.pending, t.nheld, t.heldOldest = 0, 0, time.Time{}
		t.mu.Unlock()
		t.setLagMetrics()
		return
	}
	t.starting()
}

func (t *tableWriter[T]) starting() { t.created.Store(time.Now().UnixNano()) }

// abandon leaves the open range uncommitted; the buffer redelivers it.
func (t *tableWriter[T]) abandon() {
	if len(t.held) > 0 {
		t.log.Info("open range abandoned uncommitted; the buffer redelivers it",
			"first", t.held[0].msg.Seq, "last", t.held[len(t.held)-1].msg.Seq)
	}
	t.held, t.heldBytes = nil, 0
	t.gone.reset()
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

// truncate cuts s to at most n bytes for a log line.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
