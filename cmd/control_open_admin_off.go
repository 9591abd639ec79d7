//go:build !clickpipe_broken_open_admin

package cmd

import (
	"net/http"

	"github.com/clickpipe/clickpipe/internal/httpx"
)

// adminGuard protects /metrics and /debug/pprof on the query listener with
// the query tokens. Building with -tags clickpipe_broken_open_admin
// injects no guard (the listener before issue 12), a negative control for
// the reliability suite's admin-surface checker.
func adminGuard(tokens []string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler { return httpx.RequireBearer(tokens, h) }
}
