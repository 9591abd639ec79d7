//go:build clickpipe_broken_trust_redelivery

package cmd

// brokenTrustRedelivery: see control_trust_redelivery_off.go. THIS BUILD IS BROKEN ON PURPOSE.
const brokenTrustRedelivery = true
