//go:build !clickpipe_broken_r1_streams

package buffer

// brokenR1Streams is a negative control for the cluster suite: building with
// -tags clickpipe_broken_r1_streams breaks a promise on purpose (streams
// and KV buckets get one replica even in cluster mode, so losing the node
// that holds them loses acknowledged events), so the suite can show that
// its checker notices. Off in every real build.
const brokenR1Streams = false
