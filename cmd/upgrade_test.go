package cmd

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// A data dir whose serving state was written by the previous release
// (layout 1: JSON records under one-byte prefixes) starts: the old state
// is moved aside, the log says so, and the state is rebuilt from the
// stream, so the user's session is there again.
func TestServeUpgradesLayout1State(t *testing.T) {
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir)
	ready := p.Find("ready", 30*time.Second)
	key, err := os.ReadFile(filepath.Join(dir, "dev-write-key"))
	require.NoError(t, err)
	body := `{"userId":"u-up","type":"track","event":"Title Clicked","messageId":"up-1","timestamp":"` +
		time.Now().UTC().Add(-time.Hour).Format(time.RFC3339) + `"}`
	req, err := http.NewRequest(http.MethodPost, "http://"+ready["ingest"].(string)+"/v1/track", strings.NewReader(body))
	require.NoError(t, err)
	req.SetBasicAuth(strings.TrimSpace(string(key)), "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	events := func(query string) int {
		tok, err := os.ReadFile(filepath.Join(dir, "dev-query-token"))
		require.NoError(t, err)
		req, _ := http.NewRequest(http.MethodGet, "http://"+query+"/v1/users/u-up/sessions", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var v struct{ Sessions []struct{ Events int } }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
		n := 0
		for _, s := range v.Sessions {
			n += s.Events
		}
		return n
	}
	clickpipetest.Eventually(t, 10*time.Second, func() bool { return events(ready["query"].(string)) == 1 }, "the event applied")
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)

	// What the previous release left: layout 1 records, no layout key.
	stateDir := filepath.Join(dir, "state")
	require.NoError(t, os.RemoveAll(stateDir))
	db, err := badger.Open(badger.DefaultOptions(stateDir).WithLogger(nil).WithMemTableSize(8 << 20))
	require.NoError(t, err)
	require.NoError(t, db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte("u\x00u-up\x00st"), []byte(`{"bookmarks":[],"first_seen_at":"2026-01-01T00:00:00Z"}`))
	}))
	require.NoError(t, db.Close())

	p = clickpipetest.Start(t, dir)
	ready = p.Find("ready", 30*time.Second)
	var warned bool
	for _, l := range p.Lines() {
		if m, _ := l["msg"].(string); strings.Contains(m, "earlier layout") {
			warned = true
		}
	}
	require.True(t, warned, "start-up says the state is rebuilt:\n%s", bytes.TrimSpace([]byte(p.Stdout())))
	olds, err := filepath.Glob(filepath.Join(dir, "state.v1-*"))
	require.NoError(t, err)
	require.Len(t, olds, 1, "the old state is kept for the operator")
	clickpipetest.Eventually(t, 15*time.Second, func() bool { return events(ready["query"].(string)) == 1 },
		"the session rebuilt from the stream")
}
