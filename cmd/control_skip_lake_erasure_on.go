//go:build clickpipe_broken_skip_lake_erasure

package cmd

// brokenSkipLakeErasure: see control_skip_lake_erasure_off.go. THIS BUILD IS BROKEN ON PURPOSE.
const brokenSkipLakeErasure = true
