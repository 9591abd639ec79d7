package cmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/config"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/ingest"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/state"
)

// eventsConsumers gives the sessionizer one consumer per partition. The
// checkpoint lives in Badger, so each consumer is recreated at checkpoint
// + 1 whenever the sessionizer (re)opens a partition.
type eventsConsumers struct {
	buf *buffer.Buffer
	// prefix names the consumers: "process-" on one node; in cluster
	// mode "process-<node>-", since every node sessionizes on its own
	// (and ConsumerFrom deletes other incarnations of the same name).
	prefix string
	// ackWait is process.ack_wait (0: the buffer's default, 30 s).
	ackWait time.Duration
}

func processConsumerPrefix(cfg *config.Config) string {
	if cfg.Cluster.Enabled {
		return "process-" + cfg.Cluster.NodeName + "-"
	}
	return "process-"
}

var _ process.Consumers = eventsConsumers{}

var _ process.ConsumerPreparer = eventsConsumers{}

func (c eventsConsumers) spec(p int, startSeq uint64) buffer.ConsumerSpec {
	return buffer.ConsumerSpec{
		Stream: buffer.EventsStream, Name: fmt.Sprintf("%sp%d", c.prefix, p),
		FilterSubject: buffer.Subject(p), StartSeq: startSeq, AckWait: c.ackWait,
	}
}

func (c eventsConsumers) PartitionConsumer(ctx context.Context, p int, startSeq uint64) (process.Fetcher, error) {
	spec := c.spec(p, startSeq)
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

func (c eventsConsumers) PrepareConsumer(ctx context.Context, p int, startSeq uint64) (process.Fetcher, error) {
	cons, err := c.buf.NewIncarnation(ctx, c.spec(p, startSeq))
	if err != nil {
		return nil, err
	}
	return cons, nil
}

func (c eventsConsumers) DiscardConsumer(ctx context.Context, f process.Fetcher) error {
	if cons, ok := f.(*buffer.Consumer); ok {
		return cons.Delete(ctx)
	}
	return nil
}

func (c eventsConsumers) LastSeq(ctx context.Context) (uint64, error) {
	st, err := c.buf.State(ctx, buffer.EventsStream)
	return st.LastSeq, err
}

// directEventsConsumers is eventsConsumers that also reads partitions
// directly from any in-sync replica (cluster mode): an open then needs
// neither the meta group nor the stream's leader to start consuming
// (process.DirectReader, docs/cluster.md "Handover").
type directEventsConsumers struct{ eventsConsumers }

var _ process.DirectReader = directEventsConsumers{}

func (c directEventsConsumers) ReadPartition(ctx context.Context, p int, from uint64, max int) ([]*event.Message, uint64, error) {
	return c.buf.ReadFrom(ctx, buffer.EventsStream, buffer.Subject(p), from, max)
}

func (c directEventsConsumers) HoldsFrom(ctx context.Context, seq uint64) (bool, error) {
	return c.buf.HoldsFrom(ctx, buffer.EventsStream, seq)
}

// archiveConsumers gives the archive one durable consumer per stream,
// recreated at the lake's committed end + 1 (its checkpoint is the
// manifests, not the consumer's position).
type archiveConsumers struct {
	buf *buffer.Buffer
	cfg archive.Config
}

var _ archive.ConsumerFactory = archiveConsumers{}

func (c archiveConsumers) Consumer(ctx context.Context, stream, name string, startSeq uint64) (archive.Fetcher, error) {
	cons, err := c.buf.ConsumerFrom(ctx, buffer.ConsumerSpec{
		Stream: stream, Name: name, StartSeq: startSeq, AckWait: c.cfg.AckWait,
		MaxAckPending: 2 * c.cfg.MaxPending, MaxDeliver: -1,
	})
	if err != nil {
		return nil, err
	}
	return cons, nil
}

func (c archiveConsumers) Bounds(ctx context.Context, stream string) (first, last uint64, err error) {
	st, err := c.buf.State(ctx, stream)
	return st.FirstSeq, st.LastSeq, err
}

func (c archiveConsumers) Read(ctx context.Context, stream string, seq uint64) (*event.Message, error) {
	m, err := c.buf.Read(ctx, stream, seq)
	if errors.Is(err, buffer.ErrGone) {
		return nil, fmt.Errorf("%w: %w", archive.ErrSequenceGone, err)
	}
	return m, err
}

// Interface guards: the concrete types cmd passes meet the consumers'
// interfaces.
var (
	_ archive.Deduper          = (*state.Store)(nil)
	_ process.Store            = (*state.Store)(nil)
	_ process.SessionPublisher = (*buffer.Buffer)(nil)
	_ process.ControlPublisher = (*buffer.Buffer)(nil)
	_ ingest.Publisher         = (*buffer.Buffer)(nil)
)
