//go:build clickpipe_broken_lake_dedup

package cmd

// brokenLakeDedup: see control_lake_dedup_off.go. THIS BUILD IS BROKEN ON PURPOSE.
const brokenLakeDedup = true
