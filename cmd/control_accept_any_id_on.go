//go:build clickpipe_broken_accept_any_id

package cmd

import "github.com/clickpipe/clickpipe/ingest"

// idChecker: see control_accept_any_id_off.go. THIS BUILD IS BROKEN ON
// PURPOSE: it accepts ids with NUL, control characters and any length.
func idChecker() ingest.IDChecker { return func(string, int) error { return nil } }
