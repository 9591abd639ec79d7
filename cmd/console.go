package cmd

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/console"
	"github.com/clickpipe/clickpipe/internal/httpx"
)

// routeConsole adds the web console and the two JSON endpoints only it
// needs (failed-item samples, lake status) to the query listener. The
// console's static files are public; everything they read needs the token.
func (n *node) routeConsole(mux *http.ServeMux) {
	h := console.Handler()
	mux.Handle(console.Prefix, h)
	mux.Handle(console.Prefix+"/", h)
	mux.Handle("GET /v1/failed/recent", httpx.RequireBearer(n.queryTokens, n.buf.RecentFailedHandler()))
	mux.Handle("GET /v1/lake/status", httpx.RequireBearer(n.queryTokens, archive.StatusHandler(n.arch)))
}

// registerDiskMetrics exposes the data directory's filesystem usage, as the
// disk watermark last measured it.
func (n *node) registerDiskMetrics() {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	n.reg.MustRegister(
		gauge("clickpipe_disk_free_bytes", "Free bytes on the data directory's filesystem.",
			func() float64 { return float64(n.disk.Usage().Free) }),
		gauge("clickpipe_disk_total_bytes", "Size of the data directory's filesystem.",
			func() float64 { return float64(n.disk.Usage().Total) }),
		gauge("clickpipe_disk_floor_bytes", "Free-space floor below which ingest answers 503.",
			func() float64 { return float64(n.cfg.Disk.Floor(n.disk.Usage().Total)) }),
	)
}
