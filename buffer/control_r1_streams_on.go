//go:build clickpipe_broken_r1_streams

package buffer

// brokenR1Streams: see control_r1_streams_off.go. THIS BUILD IS BROKEN ON PURPOSE.
const brokenR1Streams = true
