//go:build !clickpipe_broken_wallclock

package process

// brokenWallClock is a negative control for the reliability suite: building with
// -tags clickpipe_broken_wallclock breaks a promise on purpose (sessions cut by arrival time instead of event time), so the
// suite can show that its checker notices. Off in every real build.
const brokenWallClock = false
