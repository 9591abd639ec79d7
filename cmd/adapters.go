package cmd

import (
	"context"
	"fmt"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/process"
)

// eventsConsumers gives the sessionizer one consumer per partition. The
// checkpoint lives in Badger, so each consumer is recreated at checkpoint
// + 1 whenever the sessionizer (re)opens a partition.
type eventsConsumers struct{ buf *buffer.Buffer }

var _ process.Consumers = eventsConsumers{}

func (c eventsConsumers) PartitionConsumer(ctx context.Context, p int, startSeq uint64) (process.Fetcher, error) {
	spec := buffer.ConsumerSpec{
		Stream: buffer.EventsStream, Name: fmt.Sprintf("process-p%d", p),
		FilterSubject: buffer.Subject(p), StartSeq: startSeq,
	}
	open := c.buf.ConsumerFrom
	if brokenTrustRedelivery {
		open = c.buf.Consumer
	}
	cons, err := open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return cons, nil
}

func (c eventsConsumers) LastSeq(ctx context.Context) (uint64, error) {
	st, err := c.buf.State(ctx, buffer.EventsStream)
	return st.LastSeq, err
}
