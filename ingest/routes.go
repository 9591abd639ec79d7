package ingest

import (
	"strings"

	"github.com/clickpipe/clickpipe/event"
)

// routeKind says how a route's body is read.
type routeKind int

const (
	kindBatch routeKind = iota
	kindSingle
	kindPixel
	kindSettings
)

// route is one tracking API endpoint; name is its metrics label.
type route struct {
	name string
	kind routeKind
	typ  string // event type implied by a single-event or pixel route
}

// routes is the whole tracking API (SEGMENT-API.md section 1). Paths are
// matched after removing a trailing slash and an optional "/v1" prefix,
// because SDKs build them from a user-configured apiHost.
var routes = map[string]route{
	"/batch":    {"batch", kindBatch, ""},
	"/import":   {"import", kindBatch, ""},
	"/b":        {"b", kindBatch, ""},
	"/track":    {"track", kindSingle, event.TypeTrack},
	"/identify": {"identify", kindSingle, event.TypeIdentify},
	"/page":     {"page", kindSingle, event.TypePage},
	"/screen":   {"screen", kindSingle, event.TypeScreen},
	"/group":    {"group", kindSingle, event.TypeGroup},
	"/alias":    {"alias", kindSingle, event.TypeAlias},
	"/t":        {"t", kindSingle, event.TypeTrack},
	"/i":        {"i", kindSingle, event.TypeIdentify},
	"/p":        {"p", kindSingle, event.TypePage},
	"/s":        {"s", kindSingle, event.TypeScreen},
	"/g":        {"g", kindSingle, event.TypeGroup},
	"/a":        {"a", kindSingle, event.TypeAlias},
	// GET /v1/pixel/{type}?data=<base64 JSON>: always a 1x1 gif.
	"/pixel/*": {"pixel", kindPixel, ""},
	// GET /v1/projects/{writeKey}/settings: the analytics.js settings doc.
	"/projects/*/settings": {"settings", kindSettings, ""},
}

// allowedMethods per route kind (OPTIONS is answered for every route).
var allowedMethods = map[routeKind]string{
	kindBatch:    "POST",
	kindSingle:   "POST",
	kindPixel:    "GET",
	kindSettings: "GET",
}

// matchRoute finds the route for a request path and its path parameter
// (the pixel type or the settings write key).
func matchRoute(path string) (route, string, bool) {
	path = strings.TrimSuffix(path, "/")
	if rest, ok := strings.CutPrefix(path, "/v1"); ok && (rest == "" || rest[0] == '/') {
		path = rest
	}
	if r, ok := routes[path]; ok {
		return r, "", true
	}
	if typ, ok := strings.CutPrefix(path, "/pixel/"); ok && !strings.Contains(typ, "/") {
		r := routes["/pixel/*"]
		r.typ = typ
		return r, typ, true
	}
	if rest, ok := strings.CutPrefix(path, "/projects/"); ok {
		if key, ok := strings.CutSuffix(rest, "/settings"); ok && key != "" && !strings.Contains(key, "/") {
			return routes["/projects/*/settings"], key, true
		}
	}
	return route{name: "unknown"}, "", false
}
