//go:build clickpipe_broken_keep_answering

package cmd

// brokenKeepAnswering: see control_keep_answering_off.go. THIS BUILD IS
// BROKEN ON PURPOSE.
const brokenKeepAnswering = true
