//go:build !clickpipe_broken_no_fence

package cmd

// brokenNoFence is a negative control for the cluster suite: building with
// -tags clickpipe_broken_no_fence breaks a promise on purpose (a partition
// owner commits and publishes without checking its lease, so a former owner
// keeps writing after losing it), so the suite can show that its checker
// notices. Off in every real build.
const brokenNoFence = false
