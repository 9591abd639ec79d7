package process

import (
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/state"
)

// Batcher lets benchmarks apply batches the way a worker does, without
// the buffer: one committed transaction per call.
type Batcher struct {
	p     *Processor
	parts map[int]*part
}

func NewBatcher(p *Processor) *Batcher { return &Batcher{p: p, parts: map[int]*part{}} }

// Apply commits msgs (of one partition, in stream order) as one batch.
func (b *Batcher) Apply(partition int, msgs []*event.Message) error {
	pt := b.parts[partition]
	if pt == nil {
		pt = &part{id: partition, strings: newInterner(), users: map[string]*userSlot{},
			titles: map[string]*state.Title{}, paths: map[string]int64{}}
		b.parts[partition] = pt
	}
	return b.p.applyChunk(pt, msgs, false)
}
