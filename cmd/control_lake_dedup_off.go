//go:build !clickpipe_broken_lake_dedup

package cmd

// brokenLakeDedup is a negative control for the reliability suite: building with
// -tags clickpipe_broken_lake_dedup breaks a promise on purpose (the archive writes every copy of a messageId), so the
// suite can show that its checker notices. Off in every real build.
const brokenLakeDedup = false
