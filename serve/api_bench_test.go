package serve_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/serve/servetest"
)

// BenchmarkContinueWatching is GET /v1/users/{id}/continue-watching
// through the handler (routing, a Badger read transaction, the freshness
// scan of 32 partition checkpoints, JSON) for random users of 20,000, each
// with 8 bookmarks (3 in the row) and an open session of 200 marks, on a
// real Badger on disk. Auth is not included (the lead's wrapper).
func BenchmarkContinueWatching(b *testing.B) {
	const users = 20000
	st := servetest.New(b, servetest.Config(), "")
	t0 := time.Date(2026, 5, 1, 18, 0, 0, 0, time.UTC)
	require.NoError(b, st.Update(func(txn *badger.Txn) error {
		for p := range 32 {
			v, _ := json.Marshal(event.PartitionState{LastSeq: 1e6, MaxEventTime: t0, Watermark: t0.Add(-5 * time.Minute)})
			if err := txn.Set(event.PartitionStateKey(p), v); err != nil {
				return err
			}
		}
		return nil
	}))
	u := benchUser(t0)
	v, err := json.Marshal(u)
	require.NoError(b, err)
	for start := 0; start < users; start += 50 {
		require.NoError(b, st.Update(func(txn *badger.Txn) error {
			for i := start; i < start+50; i++ {
				if err := txn.Set(event.UserStateKey(fmt.Sprintf("user-%d", i)), v); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	api := newAPI(b, st)
	b.Run("serial", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		b.ReportAllocs()
		for b.Loop() {
			getCW(b, api, rng)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
			for pb.Next() {
				getCW(b, api, rng)
			}
		})
	})
}

func getCW(b *testing.B, h http.Handler, rng *rand.Rand) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v1/users/user-%d/continue-watching", rng.IntN(20000)), nil))
	if rec.Code != http.StatusOK {
		b.Fatalf("status %d", rec.Code)
	}
}

func benchUser(t0 time.Time) event.UserState {
	var u event.UserState
	for i := range 8 {
		u.Bookmarks = append(u.Bookmarks, event.Bookmark{AssetID: fmt.Sprintf("asset-%d", i), SeriesID: "Dark",
			Title: "Dark", Season: 1, Episode: i + 1, PositionMs: 615_000, TotalMs: 3_000_000, WatchedMs: 600_000,
			LastWatchedAt: t0.Add(time.Duration(i) * time.Hour), InRow: i%3 == 0})
	}
	var marks []event.Mark
	for i := range 200 {
		marks = append(marks, event.Mark{At: t0.UnixMilli() + int64(i)*1000, Kind: "view", Name: "home", N: 1})
	}
	u.Open = []event.OpenSession{{Platform: "web", Marks: marks}}
	u.FirstSeenAt = t0
	return u
}
