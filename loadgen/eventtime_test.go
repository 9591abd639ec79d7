package loadgen

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// clockServer acknowledges every batch and records, per event, how far its
// timestamp is ahead of the server's wall clock on arrival (which is after
// the send).
type clockServer struct {
	mu     sync.Mutex
	events int
	ahead  time.Duration // largest timestamp - arrival seen
}

func (s *clockServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	var msg struct {
		Batch []struct {
			Timestamp time.Time `json:"timestamp"`
		} `json:"batch"`
	}
	if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, ev := range msg.Batch {
		if d := ev.Timestamp.Sub(arrived); (s.events == 0 && i == 0) || d > s.ahead {
			s.ahead = d
		}
	}
	s.events += len(msg.Batch)
	_, _ = w.Write([]byte(`{"success":true}`))
}

func TestEventTimeNeverAheadOfWallClock(t *testing.T) {
	const tolerance = 20 * time.Millisecond
	tests := []struct {
		name        string
		rate        float64 // 0: closed loop
		users       int
		accelerated bool
		clamped     bool // expect events stamped with the wall clock
	}{
		// a few sessions and plenty of users: the generator starts
		// sessions as the rate needs them and never clamps
		{"open loop, users to spare", 2000, 100_000, false, false},
		// closed loop with a tiny audience: every user busy, clamped
		{"closed loop, audience exhausted", 0, 200, false, true},
		// the opt-in: simulated time runs far ahead (the control)
		{"accelerated", 0, 200, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &clockServer{}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			cfg := DefaultConfig()
			cfg.Target, cfg.WriteKey = ts.URL, "wk_test"
			cfg.Profile.Rate = tt.rate
			cfg.Connections, cfg.BatchSize, cfg.Duration = 4, 50, time.Second
			cfg.Population.Users, cfg.Population.ActiveSessions = tt.users, 10
			cfg.Population.Start, cfg.Population.Accelerated = time.Now(), tt.accelerated
			r, err := New(cfg, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			rep, err := r.Run(t.Context())
			require.NoError(t, err)

			srv.mu.Lock()
			defer srv.mu.Unlock()
			require.Positive(t, srv.events)
			require.Equal(t, int64(srv.events), rep.EventsAcked)
			if tt.accelerated {
				require.Greater(t, srv.ahead, time.Minute, "accelerated simulated time runs ahead")
				require.Zero(t, rep.EventsClamped)
				return
			}
			require.LessOrEqual(t, srv.ahead, tolerance, "an event was stamped %s after it arrived", srv.ahead)
			require.Equal(t, tt.clamped, rep.EventsClamped > 0, "clamped %d", rep.EventsClamped)
		})
	}
}
