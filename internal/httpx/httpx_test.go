package httpx

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRequireBearer(t *testing.T) {
	h := RequireBearer([]string{"token-aaaa", "token-bbbb"}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"Bearer token-aaaa", http.StatusTeapot},
		{"Bearer token-bbbb", http.StatusTeapot},
		{"Bearer token-cccc", http.StatusUnauthorized},
		{"Bearer ", http.StatusUnauthorized},
		{"Basic dG9rZW4tYWFhYTo=", http.StatusUnauthorized},
		{"", http.StatusUnauthorized},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		h.ServeHTTP(rec, req)
		require.Equal(t, tc.want, rec.Code, tc.header)
		if tc.want == http.StatusUnauthorized {
			require.JSONEq(t, `{"code":"unauthorized","error":"missing or invalid bearer token"}`, rec.Body.String())
		}
	}
}

func TestNewServerSetsEveryTimeout(t *testing.T) {
	s := NewServer(http.NotFoundHandler(), DefaultTimeouts())
	require.Positive(t, s.ReadHeaderTimeout)
	require.Positive(t, s.ReadTimeout)
	require.Positive(t, s.WriteTimeout)
	require.Positive(t, s.IdleTimeout)
	require.Positive(t, s.MaxHeaderBytes)
}

func TestLimitListenerBoundsConnections(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := LimitListener(raw, 2)
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		require.NoError(t, err)
		clients = append(clients, c)
		defer c.Close()
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted past the limit")
	case <-time.After(200 * time.Millisecond):
	}
	require.NoError(t, first.Close())
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("closing a connection did not free a slot")
	}
	second.Close()
}
