package serve_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/serve/servetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFirstOccurrence(t *testing.T) {
	st := servetest.New(t, servetest.Config(), "")
	p1, p2 := event.Position{Seq: 7, Index: 3}, event.Position{Seq: 9, Index: 0}
	steps := []struct {
		name      string
		source    string
		id        string
		pos       event.Position
		wantFirst bool
	}{
		{"absent: inserted", "web", "m1", p1, true},
		{"same position again (a replay): still the first", "web", "m1", p1, true},
		{"later position: a duplicate", "web", "m1", p2, false},
		{"earlier position is not the first either", "web", "m1", event.Position{Seq: 1}, false},
		{"the first position is kept", "web", "m1", p1, true},
		{"same id, other source: its own entry", "ios", "m1", p2, true},
		{"other id", "web", "m2", p2, true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			first, err := st.FirstOccurrence(s.source, s.id, s.pos)
			require.NoError(t, err)
			require.Equal(t, s.wantFirst, first)
		})
	}
}

func TestFirstOccurrenceTTLIsTheDedupWindow(t *testing.T) {
	cfg := servetest.Config()
	cfg.DedupWindow = time.Hour
	st := servetest.New(t, cfg, "")
	before := time.Now()
	_, err := st.FirstOccurrence("web", "m1", event.Position{Seq: 1})
	require.NoError(t, err)
	require.NoError(t, st.View(func(txn *badger.Txn) error {
		item, err := txn.Get(event.DedupKey("web", "m1"))
		require.NoError(t, err)
		exp := time.Unix(int64(item.ExpiresAt()), 0)
		require.WithinRange(t, exp, before.Add(time.Hour-time.Second), time.Now().Add(time.Hour+time.Second))
		return nil
	}))
}

// After the window the entry is gone and the id counts as new again (the
// horizon is bounded, so is the index). Badger's TTL has 1 s resolution.
func TestFirstOccurrenceExpires(t *testing.T) {
	cfg := servetest.Config()
	cfg.DedupWindow = time.Second
	st := servetest.New(t, cfg, "")
	first, err := st.FirstOccurrence("web", "m1", event.Position{Seq: 1})
	require.NoError(t, err)
	require.True(t, first)
	first, err = st.FirstOccurrence("web", "m1", event.Position{Seq: 2})
	require.NoError(t, err)
	require.False(t, first)
	require.Eventually(t, func() bool {
		first, err := st.FirstOccurrence("web", "m1", event.Position{Seq: 3})
		return err == nil && first
	}, 5*time.Second, 50*time.Millisecond)
}

// Concurrent callers with different positions: exactly one wins and its
// position is the one stored; the others' conflicts are retried, not
// returned.
func TestFirstOccurrenceConcurrent(t *testing.T) {
	st := servetest.New(t, servetest.Config(), "")
	const n = 16
	var wg sync.WaitGroup
	firsts := make([]bool, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			firsts[i], errs[i] = st.FirstOccurrence("web", "race", event.Position{Seq: uint64(i + 1)})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i := range n {
		require.NoError(t, errs[i])
		if firsts[i] {
			require.Equal(t, -1, winner, "two first occurrences")
			winner = i
		}
	}
	require.NotEqual(t, -1, winner)
	first, err := st.FirstOccurrence("web", "race", event.Position{Seq: uint64(winner + 1)})
	require.NoError(t, err)
	require.True(t, first, "the winner's position is stored")
}

func TestFirstOccurrenceCorruptEntry(t *testing.T) {
	st := servetest.New(t, servetest.Config(), "")
	require.NoError(t, st.Update(func(txn *badger.Txn) error {
		return txn.Set(event.DedupKey("web", "bad"), []byte{1, 2, 3})
	}))
	_, err := st.FirstOccurrence("web", "bad", event.Position{Seq: 1})
	require.ErrorContains(t, err, "bad length")
}

func TestClosedStore(t *testing.T) {
	st, err := serve.Open(servetest.Config(), t.TempDir(), quiet, nil)
	require.NoError(t, err)
	require.NoError(t, st.Healthy())
	require.NoError(t, st.Close())
	require.NoError(t, st.Close(), "Close is idempotent")
	require.ErrorIs(t, st.Healthy(), serve.ErrClosed)
	require.ErrorIs(t, st.View(func(*badger.Txn) error { return nil }), serve.ErrClosed)
	require.ErrorIs(t, st.Update(func(*badger.Txn) error { return nil }), serve.ErrClosed)
	_, err = st.FirstOccurrence("web", "m", event.Position{})
	require.True(t, errors.Is(err, serve.ErrClosed))
}

// Update is durable and atomic: an error from fn discards every write.
func TestUpdateAtomicAndDurable(t *testing.T) {
	dir := t.TempDir()
	st, err := serve.Open(servetest.Config(), dir, quiet, nil)
	require.NoError(t, err)
	boom := errors.New("boom")
	require.ErrorIs(t, st.Update(func(txn *badger.Txn) error {
		require.NoError(t, txn.Set([]byte("a"), []byte("1")))
		return boom
	}), boom)
	require.NoError(t, st.Update(func(txn *badger.Txn) error { return txn.Set([]byte("b"), []byte("2")) }))
	require.NoError(t, st.Close())
	st, err = serve.Open(servetest.Config(), dir, quiet, nil)
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte("a"))
		require.ErrorIs(t, err, badger.ErrKeyNotFound)
		_, err = txn.Get([]byte("b"))
		return err
	}))
}
