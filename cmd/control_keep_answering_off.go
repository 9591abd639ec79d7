//go:build !clickpipe_broken_keep_answering

package cmd

// brokenKeepAnswering is a negative control for the cluster suite: building
// with -tags clickpipe_broken_keep_answering breaks a promise on purpose (a
// node that loses a partition's lease keeps answering its queries from its
// own state, at its old epoch, as a zombie owner would), so the suite can
// show that its stale-answer checker notices. Off in every real build.
const brokenKeepAnswering = false
