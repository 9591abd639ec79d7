//go:build clickpipe_broken_poison_dropped

package cmd

import (
	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer"
)

// poisonSink: see control_poison_dropped_off.go. THIS BUILD IS BROKEN ON
// PURPOSE: poison items are left out of the lake, counted and logged only.
func poisonSink(*buffer.Buffer) archive.FailedPublisher { return nil }
