package state_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestRecordsRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 18, 0, 0, 0, time.UTC)
	sess := event.Session{SessionID: "s1", Version: 3, UserKey: "u1", Source: "web", Platform: "tv",
		Platforms: []string{"tv", "mobile"}, Start: t0, End: t0.Add(time.Hour), DurationMs: 3_600_000, Events: 9,
		BrowseCount: 2, Searches: 1, Plays: 1, Pauses: 2, PauseMs: 5, Seeks: 1, Rebuffers: 1, RebufferMs: 7,
		WatchMs: 100, Completions: 1, ClicksToPlay: 3, TimeToPlayMs: 30_000, ScreensBeforePlay: []string{"home", ""},
		BrowseAbandon: true, ClosedBy: "gap", MergedInto: "s0"}
	u := state.User{FirstSeen: 1, LastSession: 2, LastPlay: 3, MaxTime: 4, Frontier: -5, LateEvents: 6, IndexedAt: 7,
		PendingMax: 8, PendingAt: 9, Sessions: []state.Sess{{ID: "s", Start: 10, End: 20, Version: 1, PubStart: 10, Closed: true, NeedPub: true,
			ClosedBy: "gap", Source: "web", Platforms: []string{"web"},
			C:           state.Counters{Events: 1, Browse: 2, Searches: 3, Plays: 4, Pauses: 5, Seeks: 6, Rebuffers: 7, Completions: 8},
			FoldedUntil: 15, Clock: state.Clock{Asset: "a", Playing: true, Seeking: true, Last: 9, LastPos: -1, PausedAt: -1,
				BufAt: 3, WatchMs: 11, PauseMs: 12, RebufferMs: 13},
			Path:  state.Path{Clicks: 2, FirstPlay: -1, Screens: []string{"x"}, Teased: []string{"t"}},
			Marks: []state.Mark{{At: 16, Kind: 5, Asset: "a", Pos: -1, Name: "n"}}, Published: state.Day{Day: 1, Sessions: 1},
			PublishedPath: "home > play"}},
		Open:   []event.Session{sess},
		Days:   []state.Day{{Day: 20000, Sessions: 1, BrowseSessions: 1, Plays: 2, Completions: 1, WatchMs: 9, RebufferMs: 1}},
		Traits: []byte(`{"a":1}`), TraitTimes: map[string]int64{"a": 5}, MergedFrom: []string{"anon"}}
	gotU, err := state.DecodeUser(state.EncodeUser(&u))
	require.NoError(t, err)
	require.Empty(t, cmp.Diff(u, gotU))

	b := state.Bookmark{Asset: "a", Series: "s", Title: "t", Season: 1, Episode: 2, PosMs: 3, TotalMs: 4, WatchedMs: 5,
		LastAt: 6, InRow: true, Completed: true, RemovedAt: 7, NextOf: "z", NextAsset: "n", NextTitle: "nt",
		NextSeason: 1, NextEpisode: 3, CompletedIn: "p", Live: true, Playing: true, CountedMinute: 8}
	gotB, err := state.DecodeBookmark(state.EncodeBookmark(&b))
	require.NoError(t, err)
	require.Equal(t, b, gotB)

	gotS, err := state.DecodeSession(state.EncodeSession(&sess))
	require.NoError(t, err)
	require.Empty(t, cmp.Diff(sess, gotS))

	tt := state.Title{Starts: 1, Completions: 2, WatchMs: 3, RebufferMs: 4, Minutes: []state.Minute{{Minute: 5, Starts: 6, Viewers: 7}}}
	gotT, err := state.DecodeTitle(state.EncodeTitle(&tt))
	require.NoError(t, err)
	require.Equal(t, tt, gotT)

	cp := state.Checkpoint{LastSeq: 1 << 40, MaxEventTime: 2, Watermark: 3, CommittedAt: 4}
	gotC, err := state.DecodeCheckpoint(state.EncodeCheckpoint(&cp))
	require.NoError(t, err)
	require.Equal(t, cp, gotC)

	paths := map[string]int64{"a > play": 3, "abandon": 1}
	gotP, err := state.DecodePaths(state.EncodePaths(paths))
	require.NoError(t, err)
	require.Equal(t, paths, gotP)

	dups := []uint32{0, 7, 300}
	gotD, err := state.DecodeDups(state.EncodeDups(dups))
	require.NoError(t, err)
	require.Equal(t, dups, gotD)
	fg := state.Forgotten{Regulation: "reg_1", Found: 2, Removed: 17, AppliedAt: 1700000000000}
	gotF, err := state.DecodeForgotten(state.EncodeForgotten(&fg))
	require.NoError(t, err)
	require.Equal(t, fg, gotF)
}

// A user record written before the pending fold point trailer decodes
// with zeros (the sessionizer then starts its arrival bound afresh).
func TestUserRecordWithoutTrailer(t *testing.T) {
	u := state.User{FirstSeen: 1, MaxTime: 4, Frontier: 3, MergedFrom: []string{"a"}}
	b := state.EncodeUser(&u)
	old := b[:len(b)-2] // two zero varints
	got, err := state.DecodeUser(old)
	require.NoError(t, err)
	require.Equal(t, u, got)
	_, err = state.DecodeUser(b[:len(b)-1])
	require.Error(t, err, "half a trailer is corrupt")
}

func TestCorruptRecordsAreErrors(t *testing.T) {
	good := state.EncodeBookmark(&state.Bookmark{Asset: "a", Title: "t"})
	for name, b := range map[string][]byte{
		"empty":         nil,
		"wrong version": append([]byte{1}, good[1:]...),
		"truncated":     good[:len(good)-2],
		"trailing":      append(bytes.Clone(good), 0),
	} {
		_, err := state.DecodeBookmark(b)
		require.ErrorIs(t, err, state.ErrCorrupt, name)
	}
}

// FuzzDecode: no input makes a decoder panic or allocate without bound.
func FuzzDecode(f *testing.F) {
	f.Add(state.EncodeUser(&state.User{Sessions: []state.Sess{{ID: "x", Marks: []state.Mark{{At: 1}}}}}))
	f.Add(state.EncodeBookmark(&state.Bookmark{Asset: "a"}))
	f.Add(state.EncodeTitle(&state.Title{Minutes: []state.Minute{{Minute: 1}}}))
	f.Add(state.EncodeForgotten(&state.Forgotten{Regulation: "r", Found: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = state.DecodeUser(b)
		_, _ = state.DecodeBookmark(b)
		_, _ = state.DecodeSession(b)
		_, _ = state.DecodeTitle(b)
		_, _ = state.DecodePaths(b)
		_, _ = state.DecodeDups(b)
		_, _ = state.DecodeCheckpoint(b)
		_, _ = state.DecodeForgotten(b)
	})
}

// keysOf are every key (and key prefix) the layout derives from one user
// id and one asset id.
func keysOf(p int, user, asset string) [][]byte {
	return [][]byte{state.UserPrefix(p, user), state.UserKey(p, user), state.BookmarksPrefix(p, user),
		state.BookmarkKey(p, user, asset), state.SessionsPrefix(p, user), state.SessionKey(p, user, 1)}
}

// FuzzKeysDoNotOverlap: no two distinct user ids produce keys of which one
// is a prefix of the other (so no id's prefix scan can list another id's
// records), whatever bytes they hold, NUL included.
func FuzzKeysDoNotOverlap(f *testing.F) {
	f.Add("victim", "victim\x00s", "a")
	f.Add("u", "u\x00\x00", "x")
	f.Add("", "\x00", "")
	f.Fuzz(func(t *testing.T, a, b, asset string) {
		if a == b {
			return
		}
		ka, kb := state.UserPrefix(0, a), state.UserPrefix(0, b)
		for _, k := range keysOf(0, b, asset) {
			require.False(t, bytes.HasPrefix(k, ka), "key %q of %q falls under the prefix of %q", k, b, a)
		}
		for _, k := range keysOf(0, a, asset) {
			require.False(t, bytes.HasPrefix(k, kb), "key %q of %q falls under the prefix of %q", k, a, b)
		}
		da, db := state.DedupKey(0, a, "m"), state.DedupKey(0, b, "m")
		require.NotEqual(t, da, db)
	})
}

func TestOutboxMsgID(t *testing.T) {
	id, ok := state.OutboxMsgID(state.OutboxKey(3, "abc", 7))
	require.True(t, ok)
	require.Equal(t, "abc/7", id)
	_, ok = state.OutboxMsgID([]byte("P\x00\x03x"))
	require.False(t, ok)
}

// A store written by the previous layout (JSON records under one-byte
// prefixes) is refused with ErrOldLayout, not misread.
func TestOldLayoutIsRefused(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(8 << 20))
	require.NoError(t, err)
	require.NoError(t, db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte("m\x00\x00\x01"), []byte(`{"last_seq":5}`))
	}))
	require.NoError(t, db.Close())
	_, err = state.Open(statetest.Options(), dir, quiet, nil)
	require.True(t, errors.Is(err, state.ErrOldLayout), "%v", err)

	fresh := statetest.New(t, statetest.Options(), "")
	require.NoError(t, fresh.Healthy())
}

func TestDuplicatesWaitForTheCheckpoint(t *testing.T) {
	st := statetest.New(t, statetest.Options(), "")
	dups, applied, err := st.Duplicates(2, 10)
	require.NoError(t, err)
	require.False(t, applied)
	require.Nil(t, dups)
	require.NoError(t, st.Update(func(txn *badger.Txn) error {
		if err := txn.Set(state.DupsKey(2, 10), state.EncodeDups([]uint32{1, 4})); err != nil {
			return err
		}
		return txn.Set(state.CheckpointKey(2), state.EncodeCheckpoint(&state.Checkpoint{LastSeq: 12}))
	}))
	dups, applied, err = st.Duplicates(2, 10)
	require.NoError(t, err)
	require.True(t, applied)
	require.Equal(t, []uint32{1, 4}, dups)
	dups, applied, err = st.Duplicates(2, 11)
	require.NoError(t, err)
	require.True(t, applied)
	require.Empty(t, dups)
}

func TestLiveTitlesAndPaths(t *testing.T) {
	l := state.NewLive(3)
	l.PutTitle(0, "a", state.Title{Starts: 2, Minutes: []state.Minute{{Minute: 10, Starts: 2, Viewers: 1}}})
	l.PutTitle(1, "a", state.Title{Starts: 1, WatchMs: 5, Minutes: []state.Minute{{Minute: 10, Viewers: 2}}})
	l.PutTitle(0, "a", state.Title{Starts: 3, Minutes: []state.Minute{{Minute: 11, Starts: 1, Viewers: 1}}}) // replaces
	got, ok := l.Title("a")
	require.True(t, ok)
	require.Equal(t, state.Title{Starts: 4, WatchMs: 5, Minutes: []state.Minute{{Minute: 10, Viewers: 2}, {Minute: 11, Starts: 1, Viewers: 1}}}, got)
	l.ResetPartition(1)
	got, _ = l.Title("a")
	require.Equal(t, int64(3), got.Starts)

	l.PutPaths(0, map[string]int64{"x": 1, "y": 5})
	l.PutPaths(2, map[string]int64{"x": 7})
	require.Equal(t, []state.PathCount{{Path: "x", Sessions: 8}, {Path: "y", Sessions: 5}}, l.TopPaths(5))
	require.Len(t, l.TopPaths(1), 1)
}
