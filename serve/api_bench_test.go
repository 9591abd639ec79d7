package serve_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

// BenchmarkContinueWatching is GET /v1/users/{id}/continue-watching
// through the handler (routing, a Badger read transaction, the prefix scan
// of the user's bookmarks, JSON) for random users of 20,000, each with 8
// bookmarks (3 in the row), on a real Badger on disk. Auth is not
// included.
func BenchmarkContinueWatching(b *testing.B) {
	const users = 20000
	st := statetest.New(b, statetest.Options(), "")
	t0 := time.Date(2026, 5, 1, 18, 0, 0, 0, time.UTC)
	for start := 0; start < users; start += 50 {
		require.NoError(b, st.Update(func(txn *badger.Txn) error {
			for i := start; i < start+50; i++ {
				u := fmt.Sprintf("user-%d", i)
				for j := range 8 {
					bm := state.Bookmark{Asset: fmt.Sprintf("asset-%d", j), Series: fmt.Sprintf("S%d", j%4), Title: "Dark",
						Season: 1, Episode: int64(j + 1), PosMs: 615_000, TotalMs: 3_000_000, WatchedMs: 600_000,
						LastAt: t0.Add(time.Duration(j) * time.Hour).UnixMilli(), InRow: j%3 == 0}
					if err := txn.Set(state.BookmarkKey(part(u), u, bm.Asset), state.EncodeBookmark(&bm)); err != nil {
						return err
					}
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
