package cmd

import (
	"net/http"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/console"
	"github.com/clickpipe/clickpipe/internal/httpx"
)

// routeConsole adds the web console and the JSON endpoints it and
// `clickpipe failed replay` need (failed items, lake status) to the query
// listener. The
// console's static files are public; everything they read needs the token.
func (n *node) routeConsole(mux *http.ServeMux) {
	h := console.Handler()
	mux.Handle(console.Prefix, h)
	mux.Handle(console.Prefix+"/", h)
	mux.Handle("GET /v1/failed/recent", httpx.RequireBearer(n.queryTokens, n.buf.RecentFailedHandler()))
	mux.Handle("GET /v1/failed", httpx.RequireBearer(n.queryTokens, n.buf.FailedPageHandler()))
	mux.Handle("GET /v1/lake/status", httpx.RequireBearer(n.queryTokens, archive.StatusHandler(n.arch)))
}
