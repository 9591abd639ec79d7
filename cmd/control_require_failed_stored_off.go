//go:build !clickpipe_broken_require_failed_stored

package cmd

// requireFailedStored is ingest's policy for a request whose invalid items
// the failed stream refuses: false answers by the valid events. Building
// with -tags clickpipe_broken_require_failed_stored answers 503 instead
// (the behaviour before issue 12), a negative control for the suite's
// full-side-stream checker.
const requireFailedStored = false
