//go:build clickpipe_broken_no_dedup

package process

// brokenNoDedup: see control_no_dedup_off.go. THIS BUILD IS BROKEN ON PURPOSE.
const brokenNoDedup = true
