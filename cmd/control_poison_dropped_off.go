//go:build !clickpipe_broken_poison_dropped

package cmd

import (
	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer"
)

// poisonSink is where the archive puts items it cannot apply: the
// failed-events stream. Building with -tags clickpipe_broken_poison_dropped
// injects none (items are only counted and logged, as before issue 12), a
// negative control for the reliability suite's poison checker.
func poisonSink(b *buffer.Buffer) archive.FailedPublisher { return b }
