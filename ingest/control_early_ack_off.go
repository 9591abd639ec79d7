//go:build !clickpipe_broken_early_ack

package ingest

// brokenEarlyAck is a negative control for the reliability suite: building with
// -tags clickpipe_broken_early_ack breaks a promise on purpose (requests answered 200 before the buffer acknowledged), so the
// suite can show that its checker notices. Off in every real build.
const brokenEarlyAck = false
