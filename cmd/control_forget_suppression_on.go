//go:build clickpipe_broken_forget_suppression

package cmd

// forgetSuppressionOnRestart: see control_forget_suppression_off.go. THIS
// BUILD IS BROKEN ON PURPOSE: after a restart, suppressed users' events
// are stored again.
const forgetSuppressionOnRestart = true
