//go:build clickpipe_broken_unstaged

package archive

// brokenUnstaged: see control_unstaged_off.go. THIS BUILD IS BROKEN ON PURPOSE.
const brokenUnstaged = true
