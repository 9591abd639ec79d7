//go:build !clickpipe_broken_forget_suppression

package cmd

// forgetSuppressionOnRestart makes the regulation registry skip loading
// the suppressed and erased ids at start. Building with -tags
// clickpipe_broken_forget_suppression sets it, a negative control for the
// reliability suite's suppression checker (T12).
const forgetSuppressionOnRestart = false
