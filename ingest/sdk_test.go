package ingest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/analytics-go/v3"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
)

// failFirst wraps the real buffer and fails its first n event publishes,
// so ingest answers 503 + Retry-After and the SDK must retry.
type failFirst struct {
	*buffer.Buffer
	n atomic.Int32
}

func (f *failFirst) Publish(ctx context.Context, p int, body []byte, hdr map[string]string) (uint64, error) {
	if f.n.Add(-1) >= 0 {
		return 0, errBoom
	}
	return f.Buffer.Publish(ctx, p, body, hdr)
}

// sdkServer runs ingest on a real JetStream whose first failures publishes
// fail.
func sdkServer(t *testing.T, failures int32) (*harness, *buffer.Buffer) {
	buf := buffertest.New(t, buffertest.Config(), "")
	pub := &failFirst{Buffer: buf}
	pub.n.Store(failures)
	cfg := testConfig()
	cfg.RetryAfter = time.Second
	return start(t, cfg, pub, nil), buf
}

type sdkCallback struct {
	mu      sync.Mutex
	ok, bad int
}

func (c *sdkCallback) Success(analytics.Message)        { c.mu.Lock(); c.ok++; c.mu.Unlock() }
func (c *sdkCallback) Failure(analytics.Message, error) { c.mu.Lock(); c.bad++; c.mu.Unlock() }

func TestAnalyticsGoSDK(t *testing.T) {
	for _, failures := range []int32{0, 1} {
		t.Run(map[int32]string{0: "clean", 1: "503 once then retry"}[failures], func(t *testing.T) {
			h, buf := sdkServer(t, failures)
			cb := &sdkCallback{}
			client, err := analytics.NewWithConfig(keyServer, analytics.Config{
				Endpoint: h.srv.URL, Interval: 50 * time.Millisecond, BatchSize: 4, Callback: cb,
				RetryAfter: func(int) time.Duration { return 50 * time.Millisecond },
			})
			require.NoError(t, err)
			const user = "go-user-1"
			require.NoError(t, client.Enqueue(analytics.Identify{UserId: user, Traits: analytics.NewTraits().SetEmail("u1@example.com")}))
			require.NoError(t, client.Enqueue(analytics.Track{UserId: user, Event: "Video Playback Started",
				Properties: analytics.NewProperties().Set("title_id", "t-42").Set("position_ms", 1200)}))
			require.NoError(t, client.Enqueue(analytics.Page{UserId: user, Name: "Home", Properties: analytics.NewProperties().SetURL("http://example.test/")}))
			require.NoError(t, client.Enqueue(analytics.Screen{UserId: user, Name: "Player"}))
			eventually(t, 10*time.Second, func() bool { cb.mu.Lock(); defer cb.mu.Unlock(); return cb.ok+cb.bad == 4 })
			require.NoError(t, client.Close())
			require.Equal(t, 4, cb.ok)

			evs := storedOnce(t, fetchAll(t, buf, buffer.EventsStream, 4), failures)
			requireSDKEvents(t, evs, user, "server", "analytics-go")
			require.Equal(t, float64(failures), counterValue(t, h, "clickpipe_ingest_publish_errors_total"))
		})
	}
}

// storedOnce keeps the first copy of each messageId. A request answered
// 503 may have had part of its events stored already (the group commit
// can seal a request's lines into two messages, one stored, one refused);
// the SDK's retry stores them again and the sessionizer and the lake keep
// one (docs/reliability.md, stream_copies). Copies are allowed only after
// an injected failure, and must be the same event.
func storedOnce(t *testing.T, evs []event.Event, failures int32) []event.Event {
	t.Helper()
	first := map[string]event.Event{}
	var out []event.Event
	for _, ev := range evs {
		prev, seen := first[ev.MessageID]
		if !seen {
			first[ev.MessageID] = ev
			out = append(out, ev)
			continue
		}
		require.Positive(t, failures, "copy of %s without a failed request", ev.MessageID)
		require.Equal(t, prev.Type, ev.Type)
		require.Equal(t, prev.Timestamp, ev.Timestamp)
		require.Equal(t, prev.UserID, ev.UserID)
	}
	return out
}

// requireSDKEvents checks the four events arrived once each, normalised.
func requireSDKEvents(t *testing.T, evs []event.Event, user, source, library string) {
	t.Helper()
	require.Len(t, evs, 4, "each event stored exactly once")
	seen := map[string]bool{}
	types := map[string]event.Event{}
	for _, ev := range evs {
		require.False(t, seen[ev.MessageID], "duplicate %s", ev.MessageID)
		seen[ev.MessageID] = true
		require.Equal(t, user, ev.UserID)
		require.Equal(t, source, ev.Source)
		require.Contains(t, string(ev.Context), library)
		require.False(t, ev.ReceivedAt.IsZero())
		require.WithinDuration(t, time.Now(), ev.Timestamp, time.Minute)
		require.Equal(t, "server", ev.Device.Platform)
		types[ev.Type] = ev
	}
	require.Len(t, types, 4)
	require.Equal(t, "Video Playback Started", types["track"].Event)
	require.JSONEq(t, `{"email":"u1@example.com"}`, string(types["identify"].Traits))
	require.Equal(t, "Home", types["page"].Name)
	require.Equal(t, "Player", types["screen"].Name)
}

func TestAnalyticsNodeSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	node, errN := exec.LookPath("node")
	npm, errP := exec.LookPath("npm")
	if errN != nil || errP != nil {
		t.Skip("node or npm not installed: the @segment/analytics-node test needs both")
	}
	dir, err := filepath.Abs("testdata/sdk-node")
	require.NoError(t, err)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@segment", "analytics-node")); err != nil {
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "npm ci: %s", out)
	}
	for _, failures := range []int32{0, 1} {
		t.Run(map[int32]string{0: "clean", 1: "503 once then retry"}[failures], func(t *testing.T) {
			h, buf := sdkServer(t, failures)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "send.js")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "CP_HOST="+h.srv.URL, "CP_WRITE_KEY="+keyWeb)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "node: %s", out)
			evs := storedOnce(t, fetchAll(t, buf, buffer.EventsStream, 4), failures)
			requireSDKEvents(t, evs, "node-user-1", "web", "@segment/analytics-node")
			require.Equal(t, float64(failures), counterValue(t, h, "clickpipe_ingest_publish_errors_total"))
		})
	}
}
