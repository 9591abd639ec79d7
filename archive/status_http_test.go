package archive_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
)

func lakeStatus(t *testing.T, h http.Handler) archive.LakeStatus {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/lake/status", nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var s archive.LakeStatus
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &s))
	return s
}

func TestStatusHandler(t *testing.T) {
	off := lakeStatus(t, archive.StatusHandler(nil))
	require.False(t, off.Enabled)
	require.Empty(t, off.Tables)

	b := buffertest.New(t, buffertest.Config(), "")
	st, err := archive.OpenDir(t.TempDir())
	require.NoError(t, err)
	var evs []event.Event
	for i := range 100 {
		evs = append(evs, makeEvent("web", i))
	}
	publishEvents(t, b, evs, 10)
	r := start(t, testConfig(), b, st, nil)
	h := archive.StatusHandler(r.a)
	eventually(t, 10*time.Second, func() bool {
		// Re-create the handler: one handler serves a cached read for 5 s.
		h = archive.StatusHandler(r.a)
		for _, tbl := range lakeStatus(t, h).Tables {
			if tbl.Table == "events" && tbl.Rows == 100 {
				return true
			}
		}
		return false
	}, "100 rows committed in the events table")
	s := lakeStatus(t, h)
	require.True(t, s.Enabled)
	require.Len(t, s.Tables, len(archive.Tables()))
	r.shutdown(t)
}
