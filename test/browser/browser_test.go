// Package browser drives the web console in a real browser (Debian's
// chromium through playwright-core, both installed by
// scripts/install-browser.sh) against the real binary under loadgen
// traffic. CLICKPIPE_BROWSER=1 makes a missing browser a failure instead of
// a skip. Screenshots go to $CLICKPIPE_BROWSER_ARTEFACTS (default
// .cache/browser/artefacts).
package browser

import (
	"bytes"
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

// tools returns node, chromium and the playwright-core module directory,
// or skips (fails with CLICKPIPE_BROWSER=1) when one is missing.
func tools(t *testing.T) (node, chromium, playwright string) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	playwright = filepath.Join(root, ".cache", "browser", "node_modules", "playwright-core")
	var missing []string
	if node, err = exec.LookPath("node"); err != nil {
		missing = append(missing, "node")
	}
	if chromium, err = exec.LookPath("chromium"); err != nil {
		missing = append(missing, "chromium")
	}
	if _, err := os.Stat(filepath.Join(playwright, "package.json")); err != nil {
		missing = append(missing, "playwright-core in .cache/browser")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		missing = append(missing, "curl")
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("browser test tools missing (%s): run scripts/install-browser.sh", strings.Join(missing, ", "))
		if os.Getenv("CLICKPIPE_BROWSER") == "1" {
			t.Fatal("CLICKPIPE_BROWSER=1 but " + msg)
		}
		t.Skip(msg)
	}
	return node, chromium, playwright
}

func artefacts(t *testing.T) string {
	dir := os.Getenv("CLICKPIPE_BROWSER_ARTEFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".cache", "browser", "artefacts")
	}
	dir, err := filepath.Abs(dir)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// server is a running clickpipe with its endpoints and credentials.
type server struct {
	bin, ingest, query, key, token string
}

func startServer(t *testing.T) server {
	dir := t.TempDir()
	// A short session gap closes the seeded viewing while the test runs,
	// so that top paths have a row.
	p := clickpipetest.Start(t, dir, "CLICKPIPE_PROCESS_SESSION_GAP=1m")
	ready := p.Find("ready", 60*time.Second)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		return strings.TrimSpace(string(b))
	}
	bin, err := clickpipetest.Binary()
	require.NoError(t, err)
	return server{bin: bin, ingest: "http://" + ready["ingest"].(string), query: "http://" + ready["query"].(string),
		key: read("dev-write-key"), token: read("dev-query-token")}
}

func (s server) post(t *testing.T, path string, body any) {
	t.Helper()
	b, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, s.ingest+path, bytes.NewReader(b))
	require.NoError(t, err)
	req.SetBasicAuth(s.key, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func (s server) get(t *testing.T, path string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.query+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// seedViewer sends one viewing of title by user (browse, play, 2.5 minutes
// of heartbeats, pause) ten minutes in the past, and one batch with an
// item that fails validation.
func (s server) seedViewer(t *testing.T, user, title string) {
	base := time.Now().UTC().Add(-10 * time.Minute)
	at := func(sec int) string { return base.Add(time.Duration(sec) * time.Second).Format(time.RFC3339Nano) }
	var batch []map[string]any
	add := func(sec int, typ, name string, props map[string]any) {
		ev := map[string]any{"type": typ, "userId": user, "timestamp": at(sec), "messageId": fmt.Sprintf("%s-%d", user, sec), "properties": props}
		if typ == "page" {
			ev["name"] = name
		} else {
			ev["event"] = name
		}
		batch = append(batch, ev)
	}
	video := func(sec int, name string, pos int) {
		add(sec, "track", name, map[string]any{"asset_id": title, "content_asset_id": title, "session_id": "play-1",
			"position": pos, "total_length": 3600, "program": "Console Test Film"})
	}
	add(0, "page", "home", nil)
	add(10, "page", "title", nil)
	add(15, "track", "Title Clicked", map[string]any{"content_asset_id": title})
	video(20, "Video Playback Started", 0)
	for i := 1; i <= 16; i++ {
		video(20+10*i, "Video Content Playing", 10*i)
	}
	video(185, "Video Playback Paused", 165)
	s.post(t, "/v1/batch", map[string]any{"batch": batch})
	// The second item has neither userId nor anonymousId: stored as failed.
	s.post(t, "/v1/batch", map[string]any{"batch": []map[string]any{
		{"type": "track", "event": "Fine", "userId": "u-ok"},
		{"type": "track", "event": "Broken Item", "properties": map[string]any{"note": "no user id"}},
	}})
}

// TestConsoleInBrowser: every console page loads without console errors,
// the overview's charts move, an event sent with curl appears in Live
// events within a second, a user lookup shows Continue Watching.
func TestConsoleInBrowser(t *testing.T) {
	node, chromium, playwright := tools(t)
	out := artefacts(t)
	s := startServer(t)

	const user, title = "console-viewer", "t-console"
	s.seedViewer(t, user, title)
	clickpipetest.Eventually(t, 10*time.Second, func() bool {
		var cw struct{ Items []map[string]any }
		s.get(t, "/v1/users/"+user+"/continue-watching", &cw)
		return len(cw.Items) > 0
	}, "Continue Watching of %s", user)

	// Bounded loadgen traffic for the charts and the live view.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lg := exec.CommandContext(ctx, s.bin, "loadgen", "--target", s.ingest, "--write-key", s.key,
		"--rate", "300", "--duration", "60s", "--drain-timeout", "5s", "--users", "2000", "--active-sessions", "200",
		"--titles", "50", "--wall-clock", "--batch", "20")
	var lgOut bytes.Buffer
	lg.Stdout, lg.Stderr = &lgOut, &lgOut
	require.NoError(t, lg.Start())
	defer func() {
		_ = lg.Process.Kill()
		_ = lg.Wait()
	}()

	cmd := exec.CommandContext(ctx, node, "console.cjs")
	cmd.Env = append(os.Environ(),
		"PLAYWRIGHT_CORE="+playwright, "CHROMIUM="+chromium, "OUT_DIR="+out,
		"CONSOLE_URL="+s.query+"/console/", "TOKEN="+s.token,
		"INGEST_URL="+s.ingest, "WRITE_KEY="+s.key, "CW_USER="+user, "CW_TITLE="+title)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("browser report:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("console.cjs: %v\nstderr:\n%s\nloadgen (tail):\n%s", err, stderr.String(), tail(lgOut.String(), 800))
	}
	t.Logf("screenshots in %s", out)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
