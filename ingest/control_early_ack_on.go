//go:build clickpipe_broken_early_ack

package ingest

// brokenEarlyAck: see control_early_ack_off.go. THIS BUILD IS BROKEN ON PURPOSE.
const brokenEarlyAck = true
