// Package e2e drives the real binary with real SDKs and reads the results
// through the query API, as a product team would.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	clickpipetest.RemoveBinary()
	os.Exit(code)
}

// nodeSDK returns node and the SDK folder with its pinned packages
// installed, or skips when Node.js is absent.
func nodeSDK(t *testing.T) (string, string) {
	node, errN := exec.LookPath("node")
	npm, errP := exec.LookPath("npm")
	if errN != nil || errP != nil {
		t.Skip("node or npm not installed: the @segment/analytics-node test needs both")
	}
	dir, err := filepath.Abs("sdk-node")
	require.NoError(t, err)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@segment", "analytics-node")); err != nil {
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "npm ci: %s", out)
	}
	return node, dir
}

func getJSON(t *testing.T, url, token string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// The Segment Node SDK sends a viewing session (browse, search, play,
// heartbeats, pause, seek, rebuffer, exit) with explicit timestamps to a
// fresh `clickpipe serve`; within a second the query API shows the title in
// Continue Watching at the right position and the session's counts,
// clicks-to-play and time-to-play.
func TestNodeSDKViewingSession(t *testing.T) {
	node, sdkDir := nodeSDK(t)
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir)
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range p.Lines() {
				if l["level"] != "DEBUG" {
					t.Logf("server: %v", l)
				}
			}
		}
	})
	ready := p.Find("ready", 30*time.Second)
	key, err := os.ReadFile(filepath.Join(dir, "dev-write-key"))
	require.NoError(t, err)
	tokb, err := os.ReadFile(filepath.Join(dir, "dev-query-token"))
	require.NoError(t, err)
	token := strings.TrimSpace(string(tokb))
	query := "http://" + ready["query"].(string)

	base := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "session.js")
	cmd.Dir = sdkDir
	cmd.Env = append(os.Environ(), "CP_HOST=http://"+ready["ingest"].(string), "CP_WRITE_KEY="+strings.TrimSpace(string(key)),
		"CP_USER=viewer-1", "CP_BASE="+base.Format(time.RFC3339))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "node: %s", out)
	sent := time.Now()

	type cwItem struct {
		AssetID         string  `json:"asset_id"`
		PositionSeconds float64 `json:"position_seconds"`
		TotalSeconds    float64 `json:"total_seconds"`
		Progress        float64 `json:"progress"`
	}
	var cw struct {
		Items []cwItem `json:"items"`
	}
	// Generous for -race on a loaded CI machine; the log line below
	// reports the real latency.
	last := ""
	clickpipetest.Eventually(t, 30*time.Second, func() bool {
		getJSON(t, query+"/v1/users/viewer-1/continue-watching", token, &cw)
		if got := fmt.Sprint(cw.Items); got != last {
			t.Logf("continue watching: %s", got)
			last = got
		}
		return len(cw.Items) == 1 && cw.Items[0].PositionSeconds == 635
	}, "Continue Watching to show t-42 at 635 s")
	t.Logf("event to Continue Watching: %s after the SDK's last flush", time.Since(sent).Round(time.Millisecond))
	require.Equal(t, "t-42", cw.Items[0].AssetID)
	require.EqualValues(t, 3600, cw.Items[0].TotalSeconds)
	require.InDelta(t, 635.0/3600, cw.Items[0].Progress, 0.001)

	var ss struct {
		Sessions []struct {
			Start             time.Time `json:"start"`
			Events            int       `json:"events"`
			BrowseActions     int       `json:"browse_actions"`
			Searches          int       `json:"searches"`
			Plays             int       `json:"plays"`
			Pauses            int       `json:"pauses"`
			PauseSeconds      float64   `json:"pause_seconds"`
			Seeks             int       `json:"seeks"`
			Rebuffers         int       `json:"rebuffers"`
			RebufferSeconds   float64   `json:"rebuffer_seconds"`
			WatchSeconds      float64   `json:"watch_seconds"`
			ClicksToPlay      *int      `json:"clicks_to_play"`
			TimeToPlaySeconds *float64  `json:"time_to_play_seconds"`
			ScreensBeforePlay []string  `json:"screens_before_play"`
		} `json:"sessions"`
	}
	getJSON(t, query+"/v1/users/viewer-1/sessions", token, &ss)
	require.Len(t, ss.Sessions, 1)
	s := ss.Sessions[0]
	require.True(t, s.Start.Equal(base), "session starts at the first event's time: %s", s.Start)
	require.Equal(t, 33, s.Events)
	require.Equal(t, 1, s.Searches)
	require.Equal(t, 1, s.Plays)
	require.Equal(t, 1, s.Pauses)
	require.EqualValues(t, 30, s.PauseSeconds)
	require.Equal(t, 1, s.Seeks)
	require.Equal(t, 1, s.Rebuffers)
	require.EqualValues(t, 5, s.RebufferSeconds)
	require.NotNil(t, s.TimeToPlaySeconds)
	require.EqualValues(t, 60, *s.TimeToPlaySeconds, "first play 60 s after the session start")
	require.NotNil(t, s.ClicksToPlay)
	require.Positive(t, *s.ClicksToPlay)
	require.Equal(t, []string{"home", "title"}, s.ScreensBeforePlay)
	require.InDelta(t, 265, s.WatchSeconds, 40, "about 265 s of playing time")
}
