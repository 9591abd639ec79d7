package archive

import "github.com/clickpipe/clickpipe/event"

// NewEventRowForBench exposes the event conversion to benchmarks.
func NewEventRowForBench(e *event.Event, pos event.Position) EventRow { return newEventRow(e, pos) }
