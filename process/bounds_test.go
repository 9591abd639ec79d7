package process_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/state"
)

// A hostile client cannot grow one user's records past their caps: one
// user sends 12 sessions of 400 events each, with 10 KB screen names,
// 10 KB asset ids and 600 distinct titles. The core record stays under
// the bound the caps imply (max_sessions sessions of max_marks events of
// two names of max_name_bytes, plus summaries and traits); bookmarks stay
// at max_bookmarks, each small.
func TestHostileUserIsBounded(t *testing.T) {
	r := newRig(t)
	r.cfg.FetchBatch = 64
	r.start()
	defer r.stop()
	cfg := r.cfg
	long := strings.Repeat("x", 10_000)
	t0 := time.Now().Add(-12 * time.Hour).UTC()
	n := 0
	for s := range 12 {
		st := newStory("hostile", t0.Add(time.Duration(s)*31*time.Minute))
		st.n = n
		for i := range 400 {
			switch i % 4 {
			case 0:
				st.add(event.TypeScreen, fmt.Sprintf("%s-%d", long, i), float64(i), "")
			case 1:
				st.track("Video Content Playing", float64(i), video(fmt.Sprintf("%s-%d", long, i), float64(i), ""))
			default:
				st.track("Video Playback Started", float64(i), video(fmt.Sprintf("t-%d-%d", s, i), 0, ""))
			}
		}
		n = st.n
		publish(t, r.b, st.evs)
	}
	waitUser(t, r, "hostile")
	p := event.Partition("hostile", 4)
	var core, bookmarks, biggestBM int
	require.NoError(t, r.store.View(func(txn *badger.Txn) error {
		item, err := txn.Get(state.UserKey(p, "hostile"))
		if err != nil {
			return err
		}
		core = int(item.ValueSize())
		it := txn.NewIterator(badger.IteratorOptions{Prefix: state.BookmarksPrefix(p, "hostile")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			bookmarks++
			biggestBM = max(biggestBM, int(it.Item().ValueSize()))
			require.LessOrEqual(t, len(it.Item().Key()), 64+cfg.MaxNameBytes, "asset ids in keys are cut")
		}
		return nil
	}))
	perMark := 2*cfg.MaxNameBytes + 32
	perSession := cfg.MaxMarks*perMark + (cfg.MaxScreens+cfg.MaxMarks)*cfg.MaxNameBytes + 1024
	bound := cfg.MaxSessions*perSession + cfg.MaxSessions*(cfg.MaxScreens*cfg.MaxNameBytes+512) + cfg.MaxTraitsBytes + 4096
	t.Logf("core record %d bytes (bound %d), %d bookmarks, largest %d bytes", core, bound, bookmarks, biggestBM)
	require.LessOrEqual(t, core, bound)
	require.LessOrEqual(t, bookmarks, cfg.MaxBookmarks)
	require.LessOrEqual(t, biggestBM, 6*cfg.MaxNameBytes+256)
}
