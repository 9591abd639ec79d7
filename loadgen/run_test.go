package loadgen

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// flakyServer answers like a Segment-compatible API under pressure: every
// third request gets 503 + Retry-After, every 50th a 400 (dropped by SDKs).
type flakyServer struct {
	mu       sync.Mutex
	n        int
	accepted map[string]int // messageId -> times accepted
	refused  [][]string     // ids of 503'd requests
	retried  [][]string     // ids of requests carrying X-Retry-Count
	rejected int            // events answered 400
	paths    map[string]int
}

func (s *flakyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, "bad gzip", 400)
			return
		}
		body = zr
	}
	raw, _ := io.ReadAll(body)
	if r.Header.Get("Authorization") != basicAuth("wk_test") {
		http.Error(w, "auth", 401)
		return
	}
	var msg struct {
		Batch     []struct{ MessageID string } `json:"batch"`
		MessageID string                       `json:"messageId"`
		WriteKey  string                       `json:"writeKey"`
	}
	if err := json.Unmarshal(raw, &msg); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	ids := []string{}
	for _, it := range msg.Batch {
		ids = append(ids, it.MessageID)
	}
	if r.URL.Path != "/v1/batch" && r.URL.Path != "/v1/b" {
		ids = []string{msg.MessageID}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	s.paths[r.URL.Path]++
	if r.Header.Get("X-Retry-Count") != "" {
		s.retried = append(s.retried, ids)
	}
	switch {
	case s.n%50 == 0:
		s.rejected += len(ids)
		http.Error(w, `{"error":"bad"}`, 400)
	case s.n%3 == 0:
		s.refused = append(s.refused, ids)
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"error":"busy"}`, 503)
	default:
		for _, id := range ids {
			s.accepted[id]++
		}
		_, _ = w.Write([]byte(`{"success":true}`))
	}
}

func TestRunRetriesWithSameIDsAndWitnessesAcks(t *testing.T) {
	tests := []struct {
		name  string
		shape Shape
		gzip  bool
		rate  float64
		n     int64
	}{
		{"node closed loop", ShapeNode, false, 0, 3000},
		{"go gzip", ShapeGo, true, 0, 3000},
		{"ajs batch open loop", ShapeAJSBatch, false, 20_000, 3000},
		{"ajs single", ShapeAJS, false, 0, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &flakyServer{accepted: map[string]int{}, paths: map[string]int{}}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			cfg := DefaultConfig()
			cfg.Target, cfg.WriteKey, cfg.Shape, cfg.Gzip = ts.URL, "wk_test", tt.shape, tt.gzip
			cfg.Profile.Rate = tt.rate
			cfg.Connections, cfg.BatchSize, cfg.MaxEvents = 4, 50, tt.n
			cfg.Duration, cfg.DrainTimeout, cfg.MaxRetryAfter = 5*time.Second, 5*time.Second, 20*time.Millisecond
			cfg.Population.Users, cfg.Population.ActiveSessions = 1000, 100
			cfg.Witness = filepath.Join(t.TempDir(), "acked")
			var progress bytes.Buffer
			cfg.Progress = &progress
			r, err := New(cfg, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			rep, err := r.Run(t.Context())
			require.NoError(t, err)

			srv.mu.Lock()
			defer srv.mu.Unlock()
			require.NotEmpty(t, srv.refused)
			require.Equal(t, int64(len(srv.refused)), rep.Retries)
			require.Equal(t, len(srv.refused), len(srv.retried), "each 503 was followed by one retry")
			// a retry carries exactly the ids of a refused request
			for _, ids := range srv.retried {
				require.True(t, slices.ContainsFunc(srv.refused, func(r []string) bool { return slices.Equal(r, ids) }), "retry %v", ids[:1])
			}
			raw, err := os.ReadFile(cfg.Witness)
			require.NoError(t, err)
			witnessed := strings.Fields(string(raw))
			require.Len(t, witnessed, len(srv.accepted))
			for _, id := range witnessed {
				require.Equal(t, 1, srv.accepted[id], "witnessed %s accepted once", id)
			}
			require.Equal(t, int64(len(witnessed)), rep.EventsAcked)
			require.Equal(t, int64(srv.rejected), rep.EventsFailed)
			require.Equal(t, tt.n, rep.EventsSent)
			require.Equal(t, rep.EventsSent, rep.EventsAcked+rep.EventsFailed)
			require.Positive(t, rep.Status["503"])
			if tt.shape == ShapeAJS {
				require.Positive(t, srv.paths["/v1/t"])
			}
			var text bytes.Buffer
			require.NoError(t, rep.WriteText(&text))
			require.Contains(t, text.String(), "events/s acknowledged")
		})
	}
}

func TestRunHostileRequestsAreCounted(t *testing.T) {
	srv := &flakyServer{accepted: map[string]int{}, paths: map[string]int{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	cfg := DefaultConfig()
	cfg.Target, cfg.WriteKey, cfg.HostileShare = ts.URL, "wk_test", 0.5
	cfg.Connections, cfg.BatchSize, cfg.MaxEvents, cfg.Duration = 2, 10, 400, 5*time.Second
	cfg.MaxRetryAfter = 10 * time.Millisecond
	cfg.Population.Users, cfg.Population.ActiveSessions = 100, 10
	r, err := New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	rep, err := r.Run(t.Context())
	require.NoError(t, err)
	require.Positive(t, rep.Hostile)
	var n int64
	for _, v := range rep.HostileStatus {
		n += v
	}
	require.Equal(t, rep.Hostile, n)
	require.Positive(t, rep.HostileStatus["401"], "the wrong write key variant")
}

func TestRunSpreadsConnectionsOverTargets(t *testing.T) {
	var targets []string
	var servers []*flakyServer
	for range 3 {
		srv := &flakyServer{accepted: map[string]int{}, paths: map[string]int{}}
		ts := httptest.NewServer(srv)
		defer ts.Close()
		servers, targets = append(servers, srv), append(targets, ts.URL)
	}
	cfg := DefaultConfig()
	cfg.Target, cfg.Targets, cfg.WriteKey = "http://unused.invalid", targets, "wk_test"
	cfg.Connections, cfg.BatchSize, cfg.MaxEvents, cfg.Duration = 6, 10, 1200, 5*time.Second
	cfg.MaxRetryAfter = 10 * time.Millisecond
	cfg.Population.Users, cfg.Population.ActiveSessions = 100, 10
	r, err := New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	rep, err := r.Run(t.Context())
	require.NoError(t, err)
	accepted := 0
	for i, srv := range servers {
		srv.mu.Lock()
		require.Positive(t, len(srv.accepted), "target %d got no events", i)
		accepted += len(srv.accepted)
		srv.mu.Unlock()
	}
	require.Equal(t, rep.EventsAcked, int64(accepted))
	require.Equal(t, strings.Join(targets, ","), rep.Target)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"default ok", func(*Config) {}, ""},
		{"bad shape", func(c *Config) { c.Shape = "php" }, "shape"},
		{"spike without base", func(c *Config) { c.Profile.SpikeRate, c.Profile.SpikeFor = 10, time.Second }, "baseline"},
		{"unbounded", func(c *Config) { c.Duration = 0 }, "duration"},
		{"batch", func(c *Config) { c.BatchSize = 3000 }, "batch size"},
		{"target", func(c *Config) { c.Target = "127.0.0.1:8080" }, "target"},
		{"targets", func(c *Config) { c.Targets = []string{"http://a:1", "b:2"} }, `target "b:2"`},
		{"zipf", func(c *Config) { c.Population.ZipfS = 1 }, "zipf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mut(&c)
			err := c.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}
