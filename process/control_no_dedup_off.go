//go:build !clickpipe_broken_no_dedup

package process

// brokenNoDedup is a negative control for the reliability suite: building with
// -tags clickpipe_broken_no_dedup breaks a promise on purpose (every copy of a messageId is applied), so the
// suite can show that its checker notices. Off in every real build.
const brokenNoDedup = false
