//go:build !clickpipe_broken_accept_any_id

package cmd

import "github.com/clickpipe/clickpipe/ingest"

// idChecker is the id rule ingest gets; nil is the production rule
// (event.CheckID). Building with -tags clickpipe_broken_accept_any_id
// injects one that accepts every id, a negative control that lets the
// reliability suite show its invalid_id checker notices.
func idChecker() ingest.IDChecker { return nil }
