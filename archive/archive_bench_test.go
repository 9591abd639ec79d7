package archive_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/archive/s3test"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
)

// BenchmarkParquetEncode is the CPU cost per event of turning stored NDJSON
// into zstd Parquet: decode, convert, encode (no store, no buffer).
func BenchmarkParquetEncode(b *testing.B) {
	var enc event.Encoder
	for i := range 10000 {
		e := makeEvent("web", i)
		require.NoError(b, enc.Append(&e))
	}
	body := enc.Bytes()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var out int
	for b.Loop() {
		evs, err := event.Decode(body)
		require.NoError(b, err)
		rows := make([]archive.EventRow, len(evs))
		for i := range evs {
			rows[i] = archive.NewEventRowForBench(&evs[i], event.Position{Seq: 1, Index: uint32(i)})
		}
		var buf bytes.Buffer
		w := parquet.NewGenericWriter[archive.EventRow](&buf)
		_, err = w.Write(rows)
		require.NoError(b, err)
		require.NoError(b, w.Close())
		out = buf.Len()
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(len(body))/float64(out), "compression")
}

// BenchmarkArchiveThroughput archives a backlog of 50,000 events (250
// group-commit messages) from a real embedded JetStream to the store, end
// to end: fetch, decode, Parquet+zstd, upload, manifest, ack.
func BenchmarkArchiveThroughput(b *testing.B) {
	b.Run("dir", func(b *testing.B) {
		benchArchive(b, func(b *testing.B) (archive.Config, archive.ObjectStore) {
			st, err := archive.OpenDir(b.TempDir())
			require.NoError(b, err)
			return benchConfig(), st
		})
	})
	b.Run("versitygw", func(b *testing.B) {
		gw := s3test.Start(b)
		n := 0
		benchArchive(b, func(b *testing.B) (archive.Config, archive.ObjectStore) {
			n++
			cfg := s3Config(gw.Addr, "s3://bench/run"+string(rune('a'+n%26))+time.Now().Format("150405.000000"))
			c := benchConfig()
			c.URL, c.S3 = cfg.URL, cfg.S3
			return c, nil
		})
	})
}

func benchConfig() archive.Config {
	cfg := testConfig()
	cfg.FlushBytes = 16 << 20
	cfg.FlushInterval = 200 * time.Millisecond
	// A fetch returns early only when the batch is full; smaller batches
	// than the backlog keep the benchmark from measuring fetch timeouts.
	cfg.FetchBatch = 50
	return cfg
}

func benchArchive(b *testing.B, setup func(*testing.B) (archive.Config, archive.ObjectStore)) {
	const events, perMsg = 50000, 200
	sent := sendEvents(events)
	var total int64
	for b.Loop() {
		b.StopTimer()
		buf := buffertest.New(b, buffertest.Config(), "")
		publishEventsTB(b, buf, sent, perMsg)
		total += int64(buf.Partitions()) // keep the compiler honest
		cfg, st := setup(b)
		a, err := archive.New(cfg, archive.Deps{Consumers: consumers{buf, cfg}, Store: st}, testLogger(b), prometheus.NewRegistry())
		require.NoError(b, err)
		require.NoError(b, a.Open(context.Background()))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		go func() { done <- a.Run(ctx) }()
		for committedRows(b, a.Store(), archive.TableEvents) < events {
			time.Sleep(50 * time.Millisecond)
		}
		b.StopTimer()
		require.NoError(b, a.Shutdown(context.Background()))
		require.NoError(b, <-done)
		cancel()
		b.StartTimer()
	}
	b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
}
