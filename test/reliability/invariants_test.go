package reliability

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// invariantsOf reads a running node's /v1/admin/invariants.
func invariantsOf(t *testing.T, dir, query string) map[string]any {
	tok, err := os.ReadFile(filepath.Join(dir, "dev-query-token"))
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodGet, "http://"+query+"/v1/admin/invariants", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var inv map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&inv))
	return inv
}

func at(m map[string]any, path ...string) any {
	var v any = m
	for _, k := range path {
		v = v.(map[string]any)[k]
	}
	return v
}

// T13: the settings RELIABILITY.md requires, read back from a started
// instance.
func TestT13Invariants(t *testing.T) {
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir, "CLICKPIPE_BUFFER_RETENTION=72h")
	ready := p.Find("ready", 30*time.Second)
	var inv map[string]any
	clickpipetest.Eventually(t, 10*time.Second, func() bool {
		inv = invariantsOf(t, dir, ready["query"].(string))
		return len(at(inv, "consumers").(map[string]any)) == 3+partitions
	}, "the three archive consumers and one sessionizer consumer per partition to exist")

	require.Equal(t, true, at(inv, "jetstream", "sync_always"))
	require.Equal(t, true, at(inv, "jetstream", "no_sigs"))
	require.Equal(t, false, at(inv, "jetstream", "client_listener"))
	for _, s := range []string{"EVENTS", "FAILED", "SESSIONS"} {
		require.Equal(t, "DiscardNew", at(inv, "streams", s, "discard"), s)
		require.Equal(t, "Limits", at(inv, "streams", s, "retention"), s)
		require.Equal(t, "File", at(inv, "streams", s, "storage"), s)
		require.Equal(t, "72h0m0s", at(inv, "streams", s, "max_age"), s)
		require.Equal(t, "sync", at(inv, "streams", s, "persist_mode"), s)
	}
	require.EqualValues(t, 256<<20, at(inv, "streams", "EVENTS", "max_bytes"))
	require.Len(t, at(inv, "streams", "EVENTS", "subjects"), partitions)
	for name, c := range at(inv, "consumers").(map[string]any) {
		require.EqualValues(t, -1, c.(map[string]any)["max_deliver"], "%s: a finite MaxDeliver turns an outage into silent omission", name)
		require.Equal(t, "AckExplicit", c.(map[string]any)["ack_policy"], name)
	}
	require.Equal(t, true, at(inv, "badger", "sync_writes"))
	for _, srv := range []string{"ingest", "query"} {
		for _, k := range []string{"read_header_timeout", "read_timeout", "write_timeout", "idle_timeout"} {
			v := at(inv, "http", srv, k).(string)
			d, err := time.ParseDuration(v)
			require.NoError(t, err)
			require.Positive(t, d, "%s %s", srv, k)
		}
		require.Positive(t, at(inv, "http", srv, "max_header_bytes"))
	}
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	p.Wait(30 * time.Second)

	// relaxed mode turns SyncAlways off, and says so.
	p = clickpipetest.Start(t, dir, "CLICKPIPE_BUFFER_RETENTION=72h", "CLICKPIPE_BUFFER_DURABILITY=relaxed")
	ready = p.Find("ready", 30*time.Second)
	inv = invariantsOf(t, dir, ready["query"].(string))
	require.Equal(t, false, at(inv, "jetstream", "sync_always"))
	require.Equal(t, "relaxed", at(inv, "jetstream", "durability"))
}
