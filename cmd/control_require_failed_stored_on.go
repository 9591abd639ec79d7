//go:build clickpipe_broken_require_failed_stored

package cmd

// requireFailedStored: see control_require_failed_stored_off.go. THIS BUILD
// IS BROKEN ON PURPOSE: a full FAILED stream fails batches whose valid
// events were stored.
const requireFailedStored = true
