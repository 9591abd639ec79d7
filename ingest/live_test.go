package ingest

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
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
	s, ok := h.in.hub.subscribe("", "")
	require.True(t, ok)
	defer h.in.hub.unsubscribe(s)
	for range 5 {
		resp, _ := h.do(t, req{path: "/v1/batch", body: batchBody(track("a"), track("b")), header: map[string]string{"Authorization": basic(keyWeb)}})
		require.Equal(t, 200, resp.StatusCode)
	}
	require.Len(t, s.ch, 2)
	require.Equal(t, 8.0, counterValue(t, h, "clickpipe_ingest_live_dropped_events_total"))
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
