//go:build !clickpipe_broken_no_body_limit

package ingest

// brokenNoBodyLimit is a negative control for the reliability suite: building with
// -tags clickpipe_broken_no_body_limit breaks a promise on purpose (no request size limits), so the
// suite can show that its checker notices. Off in every real build.
const brokenNoBodyLimit = false
