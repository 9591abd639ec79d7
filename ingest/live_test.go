package ingest

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/httpx"
)

// readSSE returns the data lines of the next n events.
func readSSE(t *testing.T, sc *bufio.Scanner, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n && sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, data)
		}
	}
	require.Len(t, out, n, "stream ended early: %v", sc.Err())
	return out
}

func TestLiveEvents(t *testing.T) {
	pub := &capture{}
	h := start(t, testConfig(), pub, nil)
	live := httptest.NewServer(httpx.RequireBearer([]string{"tok"}, h.in.LiveHandler()))
	defer live.Close()

	open := func(query string) (*http.Response, *bufio.Scanner) {
		r, err := http.NewRequest("GET", live.URL+"/v1/events/live"+query, nil)
		require.NoError(t, err)
		r.Header.Set("Authorization", "Bearer tok")
		resp, err := live.Client().Do(r)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		return resp, bufio.NewScanner(resp.Body)
	}
	all, allSc := open("")
	defer all.Body.Close()
	mine, mineSc := open("?source=server&user_id=u2")
	defer mine.Body.Close()
	eventually(t, 2*time.Second, func() bool { return h.in.hub.n.Load() == 2 })

	resp, _ := h.do(t, req{path: "/v1/batch", body: batchBody(track("u1"), track("u2")), header: map[string]string{"Authorization": basic(keyWeb)}})
	require.Equal(t, 200, resp.StatusCode)
	resp, _ = h.do(t, req{path: "/v1/batch", body: batchBody(track("u2")), header: map[string]string{"Authorization": basic(keyServer)}})
	require.Equal(t, 200, resp.StatusCode)

	got := readSSE(t, allSc, 3)
	for _, g := range got {
		var ev event.Event
		require.NoError(t, jsonUnmarshal([]byte(g), &ev))
		require.Equal(t, "track", ev.Type)
	}
	one := readSSE(t, mineSc, 1)
	var ev event.Event
	require.NoError(t, jsonUnmarshal([]byte(one[0]), &ev))
	require.Equal(t, "u2", ev.UserID)
	require.Equal(t, "server", ev.Source)

	r, _ := http.NewRequest("GET", live.URL+"/v1/events/live", nil)
	resp, err := live.Client().Do(r)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode)
}

// A subscriber that never reads loses events (counted) and never slows
// ingest.
func TestLiveSlowReaderDoesNotBlock(t *testing.T) {
	cfg := testConfig()
	cfg.LiveBuffer = 2
	pub := &capture{}
	h := start(t, cfg, pub, nil)
	s, err := h.in.hub.subscribe("", "")
	require.NoError(t, err)
	defer h.in.hub.unsubscribe(s)
	for range 5 {
		resp, _ := h.do(t, req{path: "/v1/batch", body: batchBody(track("a"), track("b")), header: map[string]string{"Authorization": basic(keyWeb)}})
		require.Equal(t, 200, resp.StatusCode)
	}
	eventually(t, 2*time.Second, func() bool {
		return counterValue(t, h, "clickpipe_ingest_live_dropped_events_total") == 8
	})
	require.Len(t, s.ch, 2)
}

// Fan-out runs off the acknowledgement path: with the fan-out stuck,
// requests are still answered.
func TestLiveFanoutOffAckPath(t *testing.T) {
	h := start(t, testConfig(), &capture{}, nil)
	s, err := h.in.hub.subscribe("", "")
	require.NoError(t, err)
	defer h.in.hub.unsubscribe(s)
	h.in.hub.mu.Lock() // the fan-out goroutine blocks on its first batch
	unlock := sync.OnceFunc(h.in.hub.mu.Unlock)
	defer unlock() // also when the checker fails
	done := make(chan int, 1)
	go func() {
		for range 3 {
			resp, _ := h.do(t, req{path: "/v1/batch", body: batchBody(track("a")), header: map[string]string{"Authorization": basic(keyWeb)}})
			if resp.StatusCode != 200 {
				done <- resp.StatusCode
				return
			}
		}
		done <- 200
	}()
	select {
	case code := <-done:
		require.Equal(t, 200, code)
	case <-time.After(5 * time.Second):
		t.Fatal("requests waited for the live fan-out")
	}
	unlock()
	eventually(t, 2*time.Second, func() bool { return len(s.ch) == 3 })
}

// Subscribers past live_max_subscribers are refused with 503 + Retry-After.
func TestLiveSubscriberCap(t *testing.T) {
	cfg := testConfig()
	cfg.LiveMaxSubscribers = 2
	h := start(t, cfg, &capture{}, nil)
	for range 2 {
		_, err := h.in.hub.subscribe("", "")
		require.NoError(t, err)
	}
	_, err := h.in.hub.subscribe("", "")
	require.ErrorIs(t, err, errLiveFull)
	rec := httptest.NewRecorder()
	h.in.LiveHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/events/live", nil))
	require.Equal(t, 503, rec.Code)
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
}

// A subscriber's queue is bounded in bytes too.
func TestLiveQueueBoundedInBytes(t *testing.T) {
	cfg := testConfig()
	cfg.LiveBufferBytes = cfg.MaxEventBytes
	h := start(t, cfg, &capture{}, nil)
	s, err := h.in.hub.subscribe("", "")
	require.NoError(t, err)
	big := `{"type":"track","event":"e","userId":"a","properties":{"pad":"` + strings.Repeat("x", int(cfg.MaxEventBytes)/2) + `"}}`
	for range 4 {
		resp, _ := h.do(t, req{path: "/v1/batch", body: batchBody(big), header: map[string]string{"Authorization": basic(keyWeb)}})
		require.Equal(t, 200, resp.StatusCode)
	}
	eventually(t, 2*time.Second, func() bool {
		return counterValue(t, h, "clickpipe_ingest_live_dropped_events_total") >= 2
	})
	require.Len(t, s.ch, 1, "one event of half the byte budget and more fits; the rest are dropped")
}

// Slowloris headers and slow bodies are cut off by the httpx server
// timeouts, and a good client is served meanwhile.
func TestSlowClients(t *testing.T) {
	pub := &capture{}
	cfg := testConfig()
	cfg.BodyTimeout = 300 * time.Millisecond // the handler's body deadline replaces the server's
	h := start(t, cfg, pub, nil)
	to := httpx.DefaultTimeouts()
	to.ReadHeader, to.Read = 200*time.Millisecond, 300*time.Millisecond
	srv := httpx.NewServer(h.in.Handler(), to)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(httpx.LimitListener(ln, 64)) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	addr := ln.Addr().String()

	var conns []net.Conn
	for range 20 { // slowloris: never finish the headers
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		_, _ = c.Write([]byte("POST /v1/batch HTTP/1.1\r\nHost: x\r\n"))
		conns = append(conns, c)
	}
	slowBody, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, _ = slowBody.Write([]byte("POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: " + basic(keyWeb) + "\r\nContent-Length: 1000\r\n\r\n{\"batch\":["))
	conns = append(conns, slowBody)

	// A good client is served while they hang.
	good, err := http.NewRequest("POST", "http://"+addr+"/v1/batch", strings.NewReader(string(batchBody(track("u")))))
	require.NoError(t, err)
	good.Header.Set("Authorization", basic(keyWeb))
	resp, err := http.DefaultClient.Do(good)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	http.DefaultClient.CloseIdleConnections()

	// Every slow connection is closed by the server within the timeouts.
	for _, c := range conns {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				var ne net.Error
				require.False(t, errorsAs(err, &ne) && ne.Timeout(), "connection still open after the server timeouts")
				break
			}
		}
		c.Close()
	}
}
