package archive_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRoundTripDirStore(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	st, err := archive.OpenDir(t.TempDir())
	require.NoError(t, err)

	var evs []event.Event
	for i := range 1000 {
		evs = append(evs, makeEvent("web", i))
	}
	publishEvents(t, b, evs, 40)
	sess := event.Session{SessionID: "s-1", Version: 1, UserKey: "user-1", Start: base, End: base.Add(time.Hour),
		Plays: 2, ClicksToPlay: 3, TimeToPlayMs: 4000, ScreensBeforePlay: []string{"home", "detail"}}
	body, _ := json.Marshal(sess)
	_, err = b.PublishSession(t.Context(), body, "s-1/1")
	require.NoError(t, err)
	f1, _ := json.Marshal(event.Failed{Reason: event.ReasonNoUserID, Source: "web", MessageID: "bad-1", ReceivedAt: base, Raw: json.RawMessage(`{"type":"track"}`)})
	f2, _ := json.Marshal(event.Failed{Reason: event.ReasonUndecodable, ReceivedAt: base.Add(2 * time.Hour), RawText: "{nope"})
	_, err = b.PublishFailed(t.Context(), f1, nil)
	require.NoError(t, err)
	_, err = b.PublishFailed(t.Context(), append(append(f1, '\n'), f2...), nil)
	require.NoError(t, err)

	cfg := testConfig()
	r := start(t, cfg, b, st, nil)
	eventually(t, 20*time.Second, func() bool {
		return committedRows(t, st, archive.TableEvents) == 1000 && committedRows(t, st, archive.TableFailed) == 3 &&
			committedRows(t, st, archive.TableSessions) == 1
	}, "lake incomplete")
	r.shutdown(t)

	rows, objs := readTable[archive.EventRow](t, st, archive.TableEvents)
	require.Len(t, rows, 1000)
	want := map[string]event.Event{}
	for _, e := range evs {
		want[e.MessageID] = e
	}
	seen := map[string]bool{}
	for _, r := range rows {
		require.False(t, seen[r.MessageID], "duplicate %s", r.MessageID)
		seen[r.MessageID] = true
		e, ok := want[r.MessageID]
		require.True(t, ok, r.MessageID)
		require.True(t, e.Timestamp.Equal(r.Timestamp), r.MessageID)
		require.True(t, e.SentAt.Equal(r.SentAt))
		require.Equal(t, e.UserID, r.UserID)
		require.Equal(t, "web", r.Platform)
		require.NotNil(t, r.PositionS)
		require.JSONEq(t, string(e.Properties), r.Properties)
		var n int
		_, err := fmt.Sscanf(r.MessageID, "msg-%d", &n)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("t-%d", n%11), r.AssetID)
		require.InDelta(t, float64(n)+0.5, *r.PositionS, 1e-9)
		require.Equal(t, fmt.Sprintf("ps-%d", n%5), r.PlaybackSessionID)
		require.Positive(t, r.StreamSeq)
	}
	// Every row sits in the partition of its event time.
	parts := map[string]bool{}
	for _, o := range objs {
		parts[o.Partition] = true
		require.True(t, strings.HasPrefix(o.Key, "events/"+o.Partition+"/"), o.Key)
	}
	require.Equal(t, map[string]bool{"dt=2026-11-25/hour=17": true, "dt=2026-11-25/hour=18": true,
		"dt=2026-11-25/hour=19": true}, parts)
	for _, o := range objs {
		got, _ := readObject[archive.EventRow](t, st, o.Key)
		for _, r := range got {
			require.Equal(t, o.Partition, "dt="+r.Timestamp.UTC().Format("2006-01-02")+"/hour="+r.Timestamp.UTC().Format("15"))
		}
	}

	srows, _ := readTable[archive.SessionRow](t, st, archive.TableSessions)
	require.Len(t, srows, 1)
	require.Equal(t, "s-1", srows[0].SessionID)
	require.Equal(t, `["home","detail"]`, srows[0].ScreensBeforePlay)
	require.True(t, base.Equal(srows[0].Start))

	frows, _ := readTable[archive.FailedRow](t, st, archive.TableFailed)
	require.Len(t, frows, 3)
	require.Equal(t, `{"type":"track"}`, string(frows[0].Raw))
	require.Equal(t, "{nope", string(frows[2].Raw))
	require.Equal(t, uint32(1), uint32(frows[2].StreamIndex))

	requireDrained(t, b, cfg) // everything acknowledged
	assertContiguous(t, st)

	statuses, err := archive.Status(t.Context(), st)
	require.NoError(t, err)
	require.Len(t, statuses, 3)
	require.Equal(t, int64(1000), statuses[0].Rows)
	require.Len(t, statuses[0].Partitions, 3)
	require.Zero(t, statuses[0].Orphans)
	var out strings.Builder
	require.NoError(t, archive.WriteStatus(&out, statuses, true, time.Now()))
	require.Contains(t, out.String(), "dt=2026-11-25/hour=18")
}

func streamOf(table string) string {
	return map[string]string{archive.TableEvents: buffer.EventsStream, archive.TableSessions: buffer.SessionsStream,
		archive.TableFailed: buffer.FailedStream}[table]
}

func assertContiguous(t *testing.T, st archive.ObjectStore) {
	t.Helper()
	for _, table := range archive.Tables() {
		l, err := archive.LoadLedger(t.Context(), st, table)
		require.NoError(t, err)
		require.Empty(t, l.Gaps, table)
		require.Empty(t, l.Overlaps, table)
	}
}
