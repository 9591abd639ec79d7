//go:build !clickpipe_broken_trust_redelivery

package cmd

// brokenTrustRedelivery is a negative control for the reliability suite: building with
// -tags clickpipe_broken_trust_redelivery breaks a promise on purpose (the sessionizer resumes a durable consumer's position instead of its Badger checkpoint), so the
// suite can show that its checker notices. Off in every real build.
const brokenTrustRedelivery = false
