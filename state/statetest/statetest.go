// Package statetest opens a real Badger serving-state store on a test's
// temporary directory, like buffer/buffertest does for the buffer.
package statetest

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/state"
)

// Options are the default store options with the smallest memtable Badger
// accepts, so many stores fit in one test process.
func Options() state.Options {
	o := state.DefaultOptions()
	o.MemTableBytes = 8 << 20
	o.BlockCacheBytes = 8 << 20
	return o
}

// New opens a store with opts in dir (t.TempDir() when dir is empty) and
// closes it when the test ends.
func New(t testing.TB, opts state.Options, dir string) *state.Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := state.Open(opts, dir, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatalf("statetest: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Fill writes users users into partition p of st with state's own
// encoders, in the shapes the sessionizer writes (a user record with an
// open session of 40 marks and 7 days, 3 bookmarks, 4 closed sessions, 20
// dedup entries, an open-index entry; per partition 50 title shares, the
// top paths, an outbox entry per 100 users) and the TTLs it gives them,
// then checkpoint lastSeq. Keys and values depend on (p, users, lastSeq,
// tag) only; tag tells two fillings of the same partition apart.
func Fill(tb testing.TB, st *state.Store, p, users int, lastSeq uint64, tag string) {
	tb.Helper()
	const perTxn = 200
	for from := 0; from < users; from += perTxn {
		err := st.Update(func(txn *badger.Txn) error {
			for i := from; i < min(from+perTxn, users); i++ {
				if err := fillUser(txn, p, fmt.Sprintf("%s-user-%d-%06d", tag, p, i), int64(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("statetest: filling partition %d: %v", p, err)
		}
	}
	err := st.Update(func(txn *badger.Txn) error {
		paths := map[string]int64{}
		for i := range 50 {
			asset := fmt.Sprintf("%s-asset-%03d", tag, i)
			paths["home > "+asset] = int64(i)
			t := state.Title{Starts: int64(i), WatchMs: int64(i) * 1000, Minutes: []state.Minute{{Minute: 29_000_000 + int64(i), Starts: 1, Viewers: 2}}}
			if err := txn.SetEntry(badger.NewEntry(state.TitleKey(p, asset), state.EncodeTitle(&t)).WithTTL(30 * 24 * time.Hour)); err != nil {
				return err
			}
		}
		for i := 0; i < users; i += 100 {
			s := event.Session{SessionID: fmt.Sprintf("%s-s-%d", tag, i), Version: 1, UserKey: "u", Events: i}
			if err := txn.Set(state.OutboxKey(p, s.SessionID, 1), state.EncodeSession(&s)); err != nil {
				return err
			}
		}
		if err := txn.Set(state.PathsKey(p), state.EncodePaths(paths)); err != nil {
			return err
		}
		return txn.Set(state.CheckpointKey(p), state.EncodeCheckpoint(&state.Checkpoint{LastSeq: lastSeq, MaxEventTime: 1_764_000_000_000}))
	})
	if err != nil {
		tb.Fatalf("statetest: filling partition %d: %v", p, err)
	}
}

// entry is one key the filling writes; ttl 0 means none.
type entry struct {
	k, v []byte
	ttl  time.Duration
}

func fillUser(txn *badger.Txn, p int, user string, i int64) error {
	t0 := int64(1_764_000_000_000) + i*60_000
	u := state.User{FirstSeen: t0, LastSession: t0, MaxTime: t0 + 3_600_000, IndexedAt: t0,
		Traits: []byte(`{"plan":"premium","country":"FR"}`)}
	s := state.Sess{ID: user + "-open", Start: t0, End: t0 + 3_600_000, Version: 1, Source: "web", Platforms: []string{"tv"},
		C: state.Counters{Events: 40, Browse: 5, Plays: 2}, Clock: state.Clock{Asset: "a1", Playing: true, PausedAt: -1, BufAt: -1}}
	for m := range 40 {
		s.Marks = append(s.Marks, state.Mark{At: t0 + int64(m)*10_000, Kind: uint8(m % 7), Asset: "a1", Pos: int64(m) * 10_000, Name: "pb-1"})
	}
	u.Sessions = []state.Sess{s}
	for d := range 7 {
		u.Days = append(u.Days, state.Day{Day: 20_400 + int64(d), Sessions: 2, Plays: 1, WatchMs: 600_000})
	}
	const day = 24 * time.Hour
	es := []entry{{state.UserKey(p, user), state.EncodeUser(&u), 90 * day}, {state.OpenIndexKey(p, t0+5_400_000, user), nil, 0}}
	for b := range 3 {
		bm := state.Bookmark{Asset: fmt.Sprintf("a%d", b), Title: "A title", PosMs: 600_000, TotalMs: 3_600_000, LastAt: t0}
		es = append(es, entry{state.BookmarkKey(p, user, bm.Asset), state.EncodeBookmark(&bm), 90 * day})
	}
	for c := range 4 {
		start := t0 - int64(c+1)*86_400_000
		cs := event.Session{SessionID: fmt.Sprintf("%s-%d", user, c), Version: 1, UserKey: user, Source: "web", Platform: "tv",
			Start: time.UnixMilli(start).UTC(), End: time.UnixMilli(start + 1_800_000).UTC(), Events: 30, Plays: 1, WatchMs: 1_500_000}
		es = append(es, entry{state.SessionKey(p, user, start), state.EncodeSession(&cs), 30 * day})
	}
	for d := range 20 {
		pos := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, uint64(i*20+int64(d))), uint32(d))
		es = append(es, entry{state.DedupKey(p, "web", fmt.Sprintf("%s-msg-%02d", user, d)), pos, 2 * day})
	}
	for _, e := range es {
		be := badger.NewEntry(e.k, e.v)
		if e.ttl > 0 {
			be = be.WithTTL(e.ttl)
		}
		if err := txn.SetEntry(be); err != nil {
			return err
		}
	}
	return nil
}

// Stored is one key of a partition as Badger holds it.
type Stored struct {
	Value     string
	ExpiresAt uint64
	Meta      byte
}

// Dump reads every key of partition p.
func Dump(tb testing.TB, st *state.Store, p int) map[string]Stored {
	tb.Helper()
	out := map[string]Stored{}
	err := st.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: state.PartitionPrefix(p), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().KeyCopy(nil))] = Stored{string(v), it.Item().ExpiresAt(), it.Item().UserMeta()}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("reading partition %d: %v", p, err)
	}
	return out
}
