//go:build clickpipe_broken_no_fence

package cmd

// brokenNoFence: see control_no_fence_off.go. THIS BUILD IS BROKEN ON PURPOSE.
const brokenNoFence = true
