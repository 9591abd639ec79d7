package ingest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
)

// benchBatch is a 100-event Segment batch of about 400-byte events, like
// the loadgen's traffic.
func benchBatch() []byte {
	items := make([]string, 100)
	for i := range items {
		items[i] = fmt.Sprintf(`{"type":"track","event":"Video Heartbeat","userId":"user-%04d","messageId":"m-%08d",`+
			`"timestamp":"2026-11-25T19:34:33.%03dZ","properties":{"title_id":"t-42","position_ms":%d,"bitrate_kbps":4800,`+
			`"cdn":"edge-7","player":"web-5.2.1"},"context":{"library":{"name":"analytics.js","version":"next-1.84.3"},`+
			`"userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"}}`,
			i, i, i, i*1000)
	}
	return []byte(`{"writeKey":"` + keyWeb + `","sentAt":"2026-11-25T19:34:34.000Z","batch":[` + strings.Join(items, ",") + `]}`)
}

// BenchmarkDecodeNormalise measures decode + validate + enrich + encode of
// one 100-event batch (everything a request costs but HTTP and publish).
func BenchmarkDecodeNormalise(b *testing.B) {
	body := benchBatch()
	n := newNormaliser(DefaultConfig(), nil)
	lim := limits{event: 32 << 10, batch: 500 << 10, items: 2500, depth: 64}
	line := make([]byte, 0, 1024)
	var ev event.Event // reused across items, as the handler does
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req, err := decodeRequest(body, false, "", lim)
		if err != nil {
			b.Fatal(err)
		}
		m := &reqMeta{receivedAt: time.Now(), sentAt: req.sentAt, source: "web", clientIP: "192.0.2.1"}
		for _, raw := range req.items {
			if bad := n.normaliseInto(&ev, raw, m); bad != nil {
				b.Fatal(bad)
			}
			var err error
			if line, err = appendEvent(line[:0], &ev); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkGroupCommitPublish measures the committer against a real
// embedded JetStream in fsync mode: concurrent "requests" of 100 encoded
// events each add to per-partition batches and wait for their acks.
func BenchmarkGroupCommitPublish(b *testing.B) {
	bcfg := buffertest.Config()
	bcfg.MaxBytes = 1 << 30 // at ~0.2 ms/op b.N reaches ~6,000 ops = 200+ MB: more than the test default
	buf := buffertest.New(b, bcfg, "")
	cfg := testConfig()
	cfg.PublishTimeout = 30 * time.Second // the machine is shared; a slow fsync is not a failure here
	in, err := New(cfg, Deps{Publisher: buf, Partitions: 4}, discard(), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	for !in.running.Load() {
		time.Sleep(time.Millisecond)
	}
	lines := make([][]byte, 100)
	users := make([]string, 100)
	for i := range lines {
		users[i] = fmt.Sprintf("user-%04d", i)
		lines[i] = []byte(fmt.Sprintf(`{"messageId":"m-%d","source":"web","type":"track","event":"Video Heartbeat","userId":"%s","timestamp":"2026-11-25T19:34:33Z","properties":{"title_id":"t-42","position_ms":1000,"bitrate_kbps":4800,"cdn":"edge-7","player":"web-5.2.1","pad":"%s"}}`,
			i, users[i], strings.Repeat("x", 180)))
	}
	size := 0
	for _, l := range lines {
		size += len(l) + 1
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var batches []*batch
			for i, l := range lines {
				bt, err := in.com.add(event.Partition(users[i], 4), l, liveMeta{})
				if err != nil {
					b.Error(err)
					return
				}
				if len(batches) == 0 || batches[len(batches)-1] != bt {
					batches = append(batches, bt)
				}
			}
			if err := waitBatches(context.Background(), batches); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
	b.StopTimer()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := in.Shutdown(sctx); err != nil {
		b.Fatal(err)
	}
	<-done
}
