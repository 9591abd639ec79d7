//go:build clickpipe_broken_plain_listener

package cmd

import (
	"net"

	"github.com/clickpipe/clickpipe/ingest"
	"github.com/clickpipe/clickpipe/internal/httpx"
)

// ingestListener: see control_plain_listener_off.go. THIS BUILD IS BROKEN
// ON PURPOSE: one global connection cap, no per-address limit, no reserve
// for health probes, no header recording.
func ingestListener(ln net.Listener, _ *ingest.Ingest, max int) net.Listener {
	return httpx.LimitListener(ln, max)
}
