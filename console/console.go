// Package console is clickpipe's built-in web console: static HTML, CSS and
// JavaScript embedded in the binary and served under /console on the query
// listener. The pages hold no data of their own: the browser asks for the
// query token once (kept in sessionStorage for the browser session) and reads
// everything through the query listener's existing endpoints with it
// (/metrics, /readyz, /v1/events/live, /v1/users/..., /v1/titles/...,
// /v1/paths/top, /v1/failed/recent, /v1/lake/status). The server does no
// per-viewer work beyond answering those requests.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// Prefix is where the console is mounted.
const Prefix = "/console"

//go:embed assets
var assets embed.FS

// Handler serves the console under Prefix. Register it for both Prefix
// and Prefix+"/".
func Handler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == Prefix {
			http.Redirect(w, r, Prefix+"/", http.StatusMovedPermanently)
			return
		}
		setHeaders(w.Header())
		rest, _ := strings.CutPrefix(r.URL.Path, Prefix)
		r2 := r.Clone(r.Context())
		r2.URL.Path = rest
		r2.URL.RawPath = ""
		files.ServeHTTP(w, r2)
	})
}

// setHeaders locks the pages down: only this origin's scripts, styles and
// endpoints; no framing; no caching of a stale app after an upgrade.
func setHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "+
		"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}
