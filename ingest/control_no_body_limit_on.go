//go:build clickpipe_broken_no_body_limit

package ingest

// brokenNoBodyLimit: see control_no_body_limit_off.go. THIS BUILD IS BROKEN ON PURPOSE.
const brokenNoBodyLimit = true
