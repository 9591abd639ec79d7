//go:build clickpipe_broken_wallclock

package process

// brokenWallClock: see control_wallclock_off.go. THIS BUILD IS BROKEN ON PURPOSE.
const brokenWallClock = true
