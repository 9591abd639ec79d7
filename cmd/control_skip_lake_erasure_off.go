//go:build !clickpipe_broken_skip_lake_erasure

package cmd

// brokenSkipLakeErasure, set only by the build tag
// clickpipe_broken_skip_lake_erasure, leaves the lake out of deletions
// (no rewrite of committed objects, no filter on new ranges): the
// negative control of the T12 lake checker.
const brokenSkipLakeErasure = false
