//go:build !clickpipe_broken_plain_listener

package cmd

import (
	"net"

	"github.com/clickpipe/clickpipe/ingest"
	"github.com/clickpipe/clickpipe/internal/httpx"
)

// ingestListener wraps the ingest listener with its connection guard
// (per-address limits, the health-probe reserve, header recording).
// Building with -tags clickpipe_broken_plain_listener injects the bare
// global connection cap instead (the listener before issue 12), a negative
// control for the reliability suite's slow-client checker.
func ingestListener(ln net.Listener, in *ingest.Ingest, _ int) net.Listener {
	return httpx.Guard(ln, in.ConnLimits())
}
