package health

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadiness(t *testing.T) {
	c := New()
	var broken error
	c.Add("store", func() error { return broken })
	mux := http.NewServeMux()
	c.Register(mux)
	code := func(path string) int {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	require.Equal(t, http.StatusServiceUnavailable, code("/readyz"), "not ready before start")
	require.Equal(t, http.StatusOK, code("/healthz"), "alive while starting")
	c.MarkStarted()
	require.Equal(t, http.StatusOK, code("/readyz"))
	broken = errors.New("disk full")
	require.Equal(t, http.StatusServiceUnavailable, code("/readyz"))
	require.Equal(t, "disk full", c.Status().Checks["store"])
	broken = nil
	c.MarkDraining()
	require.Equal(t, http.StatusServiceUnavailable, code("/readyz"), "draining is not ready")
}
