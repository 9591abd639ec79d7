package serve_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

// Read-your-writes: a user query given ?after= (ingest's
// Clickpipe-Position) answers only once the user's partition has applied
// the sequence it names for that partition; past serve.after_wait it is a
// 503 not_caught_up with Retry-After; a malformed value is a 400.
func TestAfterWaitsForTheUsersPartition(t *testing.T) {
	st := statetest.New(t, statetest.Options(), "")
	live, err := state.LoadLive(st, parts)
	require.NoError(t, err)
	cfg := serve.DefaultConfig()
	cfg.AfterWait = 300 * time.Millisecond
	api, err := serve.NewAPI(st, live, cfg, quiet, nil)
	require.NoError(t, err)
	p, other := part("u1"), 1-part("u1")
	live.SetFreshness(p, state.Freshness{Checkpoint: 10})
	path := func(after string) string { return "/v1/users/u1/sessions?after=" + after }

	code, _ := call(t, api, path(fmt.Sprintf("%d:10", p)))
	require.Equal(t, http.StatusOK, code, "already applied")
	code, _ = call(t, api, path(fmt.Sprintf("%d:99", other)))
	require.Equal(t, http.StatusOK, code, "another partition's position does not hold the query")

	began := time.Now()
	code, v := call(t, api, path(fmt.Sprintf("%d:11,%d:5", p, other)))
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not_caught_up", v["code"], v)
	require.GreaterOrEqual(t, time.Since(began), cfg.AfterWait)

	done := make(chan int, 1)
	go func() { c, _ := call(t, api, path(fmt.Sprintf("%d:11", p))); done <- c }()
	time.Sleep(100 * time.Millisecond)
	select {
	case c := <-done:
		t.Fatalf("answered %d before the partition applied sequence 11", c)
	default:
	}
	live.SetFreshness(p, state.Freshness{Checkpoint: 11})
	select {
	case c := <-done:
		require.Equal(t, http.StatusOK, c)
	case <-time.After(2 * time.Second):
		t.Fatal("no answer once sequence 11 was applied")
	}

	for _, bad := range []string{"x", "1", "1:", ":5", "-1:5", fmt.Sprintf("%d:5", parts)} {
		code, v := call(t, api, path(bad))
		require.Equal(t, http.StatusBadRequest, code, bad)
		require.Equal(t, "invalid_parameter", v["code"], bad)
	}
}
