package process_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

// The oracle test (issue 4): a seeded workload goes through the real
// consumer path (embedded JetStream, Processor, Badger) while faults are
// injected: fetched batches dropped before commit, commits that fail,
// commits that succeed but report failure, lost acks (JetStream redelivers
// after ack_wait), deliveries that never arrive, batches delivered twice, a graceful restart with the
// store closed and reopened, and a hard stop. The final state must equal
// a recomputation: the same stream applied once, in order, by a fresh
// Processor on a fresh store with other batch sizes and no faults.
// CLICKPIPE_ORACLE_SEED runs another workload.

var errInjected = errors.New("injected fault")

// faults decides, under a seeded generator and a budget per kind, when to
// inject a fault, and counts what it injected.
type faults struct {
	mu     sync.Mutex
	rng    *rand.Rand
	prob   map[string]float64
	budget map[string]int
	fired  map[string]int
}

func newFaults(seed uint64) *faults {
	return &faults{rng: rand.New(rand.NewPCG(seed, 1)), fired: map[string]int{},
		// Fetch and commit failures make the worker back off for a
		// second, so their budgets are small.
		prob: map[string]float64{"fetch_error": 0.1, "commit_error": 0.1, "ambiguous_commit": 0.1,
			"lost_ack": 0.04, "redeliver": 0.1, "lost_delivery": 0.05},
		budget: map[string]int{"fetch_error": 2, "commit_error": 2, "ambiguous_commit": 2,
			"lost_ack": 25, "redeliver": 25, "lost_delivery": 3}}
}

func (f *faults) roll(kind string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.budget[kind] <= 0 || f.rng.Float64() >= f.prob[kind] {
		return false
	}
	f.budget[kind]--
	f.fired[kind]++
	return true
}

func (f *faults) count() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k := range f.prob {
		out[k] = f.fired[k]
	}
	return out
}

// faultyFetcher wraps a real partition consumer.
type faultyFetcher struct {
	process.Fetcher
	f    *faults
	prev []*event.Message
}

func (x *faultyFetcher) Fetch(ctx context.Context, max int, wait time.Duration) ([]*event.Message, error) {
	msgs, err := x.Fetcher.Fetch(ctx, max, wait)
	if err != nil || len(msgs) == 0 {
		return msgs, err
	}
	if x.f.roll("fetch_error") {
		return nil, errInjected // fetched, never acked
	}
	if x.f.roll("lost_delivery") {
		// One delivery never arrives (a fetch cut in flight): never
		// acked, redelivered after ack_wait, by when newer messages moved
		// the checkpoint past it unless the jump in delivery sequence is
		// noticed.
		msgs = slices.Delete(msgs, 0, 1)
	}
	for _, m := range msgs {
		if x.f.roll("lost_ack") {
			m.Acker = lostAck{m.Acker}
		}
	}
	out := msgs
	if len(x.prev) > 0 && x.f.roll("redeliver") {
		out = append(slices.Clone(x.prev), msgs...)
	}
	x.prev = msgs
	return out, nil
}

// lostAck acknowledges nothing: JetStream redelivers after ack_wait.
type lostAck struct{ event.Acker }

func (lostAck) Ack(context.Context) error { return nil }

// faultyStore wraps the real store: some commits are discarded and
// reported, some commit and report a failure anyway.
type faultyStore struct {
	*state.Store
	f *faults
}

func (s faultyStore) Update(fn func(txn *badger.Txn) error) error {
	switch {
	case s.f.roll("commit_error"):
		return s.Store.Update(func(txn *badger.Txn) error {
			if err := fn(txn); err != nil {
				return err
			}
			return errInjected // badger discards the transaction
		})
	case s.f.roll("ambiguous_commit"):
		if err := s.Store.Update(fn); err != nil {
			return err
		}
		return errInjected
	}
	return s.Store.Update(fn)
}

// stream publishes the workload's messages and remembers their sequences.
type stream struct {
	t    *testing.T
	b    *buffer.Buffer
	msgs []message
	next int
	seqs [][]uint64 // per partition
}

func (s *stream) publishTo(n int) {
	s.t.Helper()
	for ; s.next < n; s.next++ {
		m := s.msgs[s.next]
		seq, err := s.b.Publish(context.Background(), m.partition, m.body, nil)
		require.NoError(s.t, err)
		s.seqs[m.partition] = append(s.seqs[m.partition], seq)
	}
}

// applied is how many published messages are at or below their
// partition's checkpoint.
func (s *stream) applied(st process.Store) int {
	s.t.Helper()
	n := 0
	require.NoError(s.t, st.View(func(txn *badger.Txn) error {
		for p, seqs := range s.seqs {
			var ps state.Checkpoint
			if err := readPS(txn, p, &ps); err != nil {
				return err
			}
			n += len(seqs) - len(slices.DeleteFunc(slices.Clone(seqs), func(q uint64) bool { return q <= ps.LastSeq }))
		}
		return nil
	}))
	return n
}

func (s *stream) waitApplied(st process.Store, n int) {
	s.t.Helper()
	eventually(s.t, 60*time.Second, func() bool { return s.applied(st) >= n })
}

// settle waits until the control messages of identity merges are
// published and applied: no control outbox entry is left and every
// message of the stream is at or below its partition's checkpoint.
func (s *stream) settle(st process.Store) {
	s.t.Helper()
	eventually(s.t, 30*time.Second, func() bool {
		info, err := s.b.State(context.Background(), buffer.EventsStream)
		if err != nil {
			return false
		}
		done := true
		_ = st.View(func(txn *badger.Txn) error {
			for p := range 4 {
				it := txn.NewIterator(badger.IteratorOptions{Prefix: state.ControlPrefix(p)})
				it.Rewind()
				if it.Valid() {
					done = false
				}
				it.Close()
			}
			for seq := info.FirstSeq; seq <= info.LastSeq && done; seq++ {
				m, err := s.b.GetMessage(context.Background(), buffer.EventsStream, seq)
				if err != nil {
					done = false
					break
				}
				p, _ := buffer.SubjectPartition(m.Subject)
				var cp state.Checkpoint
				if readPS(txn, p, &cp) != nil || cp.LastSeq < seq {
					done = false
				}
			}
			return nil
		})
		return done
	})
}

type running struct {
	proc   *process.Processor
	cancel context.CancelFunc
	errc   chan error
}

func startProcessor(t *testing.T, cfg process.Config, st process.Store, c process.Consumers, b *buffer.Buffer) *running {
	t.Helper()
	p, err := process.New(cfg, process.Deps{Store: st, Consumers: c, Sessions: b, Controls: b, Partitions: 4, Live: state.NewLive(4)},
		quiet, prometheus.NewRegistry())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{proc: p, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- p.Run(ctx) }()
	return r
}

func (r *running) shutdown(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, r.proc.Shutdown(ctx))
	require.NoError(t, <-r.errc)
	r.cancel()
}

// kill abandons in-flight work like a crash would.
func (r *running) kill(t *testing.T) {
	t.Helper()
	r.cancel()
	require.NoError(t, <-r.errc)
}

func openStore(t *testing.T, dir string) *state.Store {
	t.Helper()
	st, err := state.Open(statetest.Options(), dir, quiet, nil)
	require.NoError(t, err)
	return st
}

// oracleConfig: no processing-time watermark (idle_timeout beyond the
// test), so the result depends on the stream only.
func oracleConfig(batch, workers int) process.Config {
	cfg := process.DefaultConfig()
	cfg.IdleTimeout = time.Hour
	cfg.FetchBatch, cfg.Workers = batch, workers
	cfg.PlatformGaps = map[string]time.Duration{"mobile": 10 * time.Minute}
	return cfg
}

func oracleSeed(t *testing.T) uint64 {
	if s := os.Getenv("CLICKPIPE_ORACLE_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
		return n
	}
	return 20261125
}

func TestOracleFaultyRunEqualsRecomputation(t *testing.T) {
	seed := oracleSeed(t)
	t.Logf("seed %d", seed)
	w := newWorkload(seed, 12, time.Date(2026, 1, 10, 18, 0, 0, 0, time.UTC))
	b := buffertest.New(t, buffertest.Config(), "")
	s := &stream{t: t, b: b, msgs: w.messages(4), seqs: make([][]uint64, 4)}
	total := len(s.msgs)
	f := newFaults(seed)
	faulty := consumers{b: b, ackWait: time.Second, wrap: func(x process.Fetcher) process.Fetcher {
		return &faultyFetcher{Fetcher: x, f: f}
	}}
	dir := t.TempDir()

	// 1: a backlog, then live traffic; graceful shutdown part way, store
	// closed; more traffic arrives while nothing consumes.
	s.publishTo(total * 4 / 10)
	st := openStore(t, dir)
	r := startProcessor(t, oracleConfig(3, 2), faultyStore{st, f}, faulty, b)
	s.publishTo(total * 6 / 10)
	s.waitApplied(st, total*3/10)
	r.shutdown(t)
	require.NoError(t, st.Close())
	s.publishTo(total * 3 / 4)

	// 2: restart on the same store; killed part way through the rest.
	st = openStore(t, dir)
	r = startProcessor(t, oracleConfig(5, 3), faultyStore{st, f}, faulty, b)
	s.publishTo(total)
	s.waitApplied(st, total*85/100)
	r.kill(t)

	// 3: a new processor finishes the stream.
	r = startProcessor(t, oracleConfig(3, 2), faultyStore{st, f}, faulty, b)
	s.waitApplied(st, total)
	s.settle(st)
	r.shutdown(t)
	got := snapshot(t, st, w)
	require.NoError(t, st.Close())
	fired := f.count()
	t.Logf("messages %d, events %d, faults %v", total, len(w.events), fired)
	for kind, n := range fired {
		require.Positive(t, n, "fault %s never injected: the run proves nothing about it", kind)
	}
	checkRelayed(t, b, got)

	// The oracle: the same stream once, in order, other batch sizes, no
	// faults, a fresh store.
	oracle := openStore(t, t.TempDir())
	defer oracle.Close()
	r = startProcessor(t, oracleConfig(64, 1), oracle, consumers{b: b, ackWait: 30 * time.Second}, b)
	s.waitApplied(oracle, total)
	s.settle(oracle)
	r.shutdown(t)
	want := snapshot(t, oracle, w)

	want.check(t, w)
	got.check(t, w)
	require.Empty(t, cmp.Diff(want.records, got.records), "Badger records differ (-oracle +faulty run)")
	require.Empty(t, cmp.Diff(want.api, got.api), "query API answers differ (-oracle +faulty run)")
}

// snap is everything the test compares and checks of one store.
type snap struct {
	records             map[string]string // key -> value, normalised (see add)
	api                 map[string]any    // path -> decoded answer without lag_seconds and as_of
	outbox              int
	closed, open, dedup int
	sessionEvents       int64
	late, starts, inRow int64
	versions            map[string]int // closed session id -> published version
	aliases             int
}

func snapshot(t *testing.T, st *state.Store, w *workload) *snap {
	t.Helper()
	s := &snap{records: map[string]string{}, api: map[string]any{}, versions: map[string]int{}}
	require.NoError(t, st.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := s.add(k, v); err != nil {
				return fmt.Errorf("key %q: %w", k, err)
			}
		}
		return nil
	}))
	live, err := state.LoadLive(st, 4)
	require.NoError(t, err)
	api, err := serve.NewAPI(st, live, serve.DefaultConfig(), quiet, nil)
	require.NoError(t, err)
	paths := []string{"/v1/paths/top"}
	for _, u := range append(w.users(), "nobody") {
		paths = append(paths, "/v1/users/"+u+"/continue-watching", "/v1/users/"+u+"/sessions?limit=200",
			"/v1/users/"+u+"/profile")
	}
	for _, a := range append(slices.Clone(catalog), asset{id: "trailer-ran"}) {
		paths = append(paths, "/v1/titles/"+a.id+"/stats")
	}
	for _, p := range paths {
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		require.Equal(t, http.StatusOK, rec.Code, p)
		var v map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v))
		delete(v, "lag_seconds") // wall clock
		delete(v, "as_of")       // wall clock of the last fetch
		delete(v, "days_since_last_session")
		delete(v, "days_since_last_play")
		delete(v, "minute") // title stats: the current minute
		if ss, ok := v["sessions"].([]any); ok {
			for _, x := range ss {
				delete(x.(map[string]any), "version")
			}
		}
		s.api[p] = v
	}
	return s
}

// add records one key and tallies what the checks need. How often a
// session was published (its version), when its partition committed and
// under which close time a user sits in the open-session index depend on
// batch boundaries, not on the stream: they are left out of the
// comparison.
func (s *snap) add(k, v []byte) error {
	if k[0] != 'P' {
		return nil
	}
	switch k[3] {
	case 'x':
		s.outbox++
		return nil
	case 'o':
		return nil
	case 'a':
		s.aliases++
	case 'c':
		cp, err := state.DecodeCheckpoint(v)
		if err != nil {
			return err
		}
		cp.CommittedAt = 0
		v = state.EncodeCheckpoint(&cp)
	case 'd':
		s.dedup++
	case 't':
		t, err := state.DecodeTitle(v)
		if err != nil {
			return err
		}
		s.starts += t.Starts
	case 'u':
		var err error
		if v, err = s.addUser(k, v); err != nil {
			return err
		}
	}
	s.records[strconv.Quote(string(k))] = string(v)
	return nil
}

func (s *snap) addUser(k, v []byte) ([]byte, error) {
	n, w := binary.Uvarint(k[4:])
	switch k[4+w+int(n)] {
	case 0:
		u, err := state.DecodeUser(v)
		if err == nil {
			s.late += u.LateEvents
			for i := range u.Sessions {
				u.Sessions[i].Version = 0
			}
			for i := range u.Open {
				s.open++
				s.sessionEvents += int64(u.Open[i].Events)
				u.Open[i].Version = 0
			}
			u.IndexedAt = 0
			return state.EncodeUser(&u), nil
		}
		return nil, err
	case 'b':
		b, err := state.DecodeBookmark(v)
		if b.InRow {
			s.inRow++
		}
		return v, err
	}
	sess, err := state.DecodeSession(v)
	if err != nil {
		return nil, fmt.Errorf("neither user, bookmark nor session: %w", err)
	}
	s.closed++
	s.sessionEvents += int64(sess.Events)
	s.versions[sess.SessionID] = sess.Version
	sess.Version = 0
	return state.EncodeSession(&sess), nil
}

// check compares a store with what counting the workload independently
// says, and makes sure the workload exercised what it claims to.
func (s *snap) check(t *testing.T, w *workload) {
	t.Helper()
	ids, starts := w.distinct()
	require.Zero(t, s.outbox, "outbox drained at shutdown")
	require.Equal(t, ids, s.dedup, "one dedup entry per (source, messageId)")
	require.Equal(t, int64(ids), s.sessionEvents+s.late, "every distinct event is in exactly one session")
	require.Equal(t, int64(starts), s.starts, "title starts: distinct non-preview playback starts")
	require.Less(t, ids, len(w.events), "the workload has duplicates")
	require.Positive(t, s.closed)
	require.Positive(t, s.open)
	require.Positive(t, s.inRow)
	require.Equal(t, 2, s.aliases, "both anonymous viewers merged into their users")
}

// checkRelayed reads the sessions stream: every version of every closed
// session was relayed exactly once, and nothing else was.
func checkRelayed(t *testing.T, b *buffer.Buffer, got *snap) {
	t.Helper()
	st, err := b.State(context.Background(), buffer.SessionsStream)
	require.NoError(t, err)
	seen := map[string]bool{}
	for seq := st.FirstSeq; seq <= st.LastSeq && st.Messages > 0; seq++ {
		m, err := b.GetMessage(context.Background(), buffer.SessionsStream, seq)
		require.NoError(t, err)
		var sess event.Session
		require.NoError(t, json.Unmarshal(m.Data, &sess))
		id := sess.SessionID + "/" + strconv.Itoa(sess.Version)
		require.False(t, seen[id], "session version %s relayed twice", id)
		seen[id] = true
	}
	for id, v := range got.versions {
		for ver := 1; ver <= v; ver++ {
			require.True(t, seen[id+"/"+strconv.Itoa(ver)], "session %s version %d never relayed", id, ver)
		}
	}
}

func (w *workload) users() []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range w.events {
		if k := a.ev.UserKey(); !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
