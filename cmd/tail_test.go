package cmd

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTailPrintsEvents(t *testing.T) {
	var gotQuery, gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotQuery, gotAuth = r.URL.RawQuery, r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(": hello\n\nevent: event\ndata: {\"messageId\":\"m1\",\"source\":\"web\",\"type\":\"track\",\"event\":\"Play\",\"userId\":\"u1\",\"timestamp\":\"2026-11-25T12:00:00Z\"}\n\n"))
	}))
	defer srv.Close()
	for _, c := range []struct {
		json bool
		want string
	}{
		{false, "2026-11-25T12:00:00Z web      track     \"Play\"                         user=u1 msg=m1\n"},
		{true, "{\"messageId\":\"m1\",\"source\":\"web\",\"type\":\"track\",\"event\":\"Play\",\"userId\":\"u1\",\"timestamp\":\"2026-11-25T12:00:00Z\"}\n"},
	} {
		var out bytes.Buffer
		err := runTail(context.Background(), &tailFlags{url: srv.URL, token: "tok", source: "web", userID: "u1", json: c.json}, &out)
		require.NoError(t, err)
		require.Equal(t, c.want, out.String())
		require.Equal(t, "source=web&user_id=u1", gotQuery)
		require.Equal(t, "Bearer tok", gotAuth)
	}
	srv401 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"code":"unauthorized"}`, http.StatusUnauthorized)
	}))
	defer srv401.Close()
	err := runTail(context.Background(), &tailFlags{url: srv401.URL}, &bytes.Buffer{})
	require.ErrorContains(t, err, "401")
}
