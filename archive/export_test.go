package archive

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/event"
)

// NewEventRowForBench exposes the event conversion to benchmarks.
func NewEventRowForBench(e *event.Event, pos event.Position) EventRow { return newEventRow(e, pos) }

// PutWithRetryForTest runs the upload retry loop of a table writer.
func PutWithRetryForTest(ctx context.Context, cfg Config, st ObjectStore, key string, data []byte) (bool, error) {
	a, err := New(cfg, Deps{Consumers: nopFactory{}, Store: st}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		return false, err
	}
	t := &tableWriter[EventRow]{a: a, name: TableEvents, log: a.log, fetcher: nopFetcher{}}
	if err := t.put(ctx, key, data, nil); err != nil {
		return false, err
	}
	return true, nil
}

type nopFactory struct{}

func (nopFactory) Consumer(context.Context, string, string, uint64) (Fetcher, error) {
	return nopFetcher{}, nil
}

type nopFetcher struct{}

func (nopFetcher) Fetch(context.Context, int, time.Duration) ([]*event.Message, error) {
	return nil, nil
}

func (nopFactory) Bounds(context.Context, string) (uint64, uint64, error) { return 0, 0, nil }

func (nopFactory) Read(context.Context, string, uint64) (*event.Message, error) {
	return nil, ErrSequenceGone
}

// PutErasureMarkerForTest writes the marker of an erasure request of ids,
// as the archive does before it rewrites a table.
func PutErasureMarkerForTest(ctx context.Context, st ObjectStore, table, id string, created time.Time, ids ...string) error {
	m := erasureMarker{ID: id, Table: table, Created: created, Status: "pending"}
	for _, u := range ids {
		m.IDHashes = append(m.IDHashes, hashID(u))
	}
	return putMarker(ctx, st, m)
}
