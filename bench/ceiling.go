package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/buffer"
)

// eventBytes is the event size the events/s-equivalent figures assume.
const eventBytes = 400

// ceilingResult is one raw JetStream publish run.
type ceilingResult struct {
	Durability   string  `json:"durability"`
	MsgBytes     int     `json:"msg_bytes"`
	Publishers   int     `json:"publishers"`
	Seconds      float64 `json:"seconds"`
	Msgs         int64   `json:"msgs"`
	MsgsPerSec   float64 `json:"msgs_per_sec"`
	MiBPerSec    float64 `json:"mib_per_sec"`
	EventsPerSec float64 `json:"events_per_sec_at_400B"`
}

// runCeiling publishes size-byte messages with publishers concurrent
// synchronous publishers through the embedded buffer for d.
func runCeiling(ctx context.Context, durability string, size, publishers int, d time.Duration) (ceilingResult, error) {
	res := ceilingResult{Durability: durability, MsgBytes: size, Publishers: publishers}
	dir, err := os.MkdirTemp("", "clickpipe-ceiling-")
	if err != nil {
		return res, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	cfg := buffer.DefaultConfig()
	cfg.Durability = durability
	cfg.MaxBytes = 64 << 30
	b, err := buffer.New(cfg, dir, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		return res, fmt.Errorf("buffer: %w", err)
	}
	if err := b.Open(ctx); err != nil {
		return res, fmt.Errorf("opening buffer: %w", err)
	}
	defer b.Close()
	body := ndjsonBody(size)
	hdr := map[string]string{"Clickpipe-Codec": "ndjson-v1", "Clickpipe-Events": fmt.Sprint(size / eventBytes)}
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var msgs atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for i := range publishers {
		wg.Go(func() {
			for p := i; runCtx.Err() == nil; p += publishers {
				if _, err := b.Publish(runCtx, p%cfg.Partitions, body, hdr); err != nil {
					if runCtx.Err() == nil {
						once.Do(func() { firstErr = err })
					}
					return
				}
				msgs.Add(1)
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Msgs = msgs.Load()
	res.MsgsPerSec = float64(res.Msgs) / res.Seconds
	res.MiBPerSec = res.MsgsPerSec * float64(size) / (1 << 20)
	res.EventsPerSec = res.MsgsPerSec * float64(size) / eventBytes
	return res, firstErr
}

// ndjsonBody is a group-commit-like body of ~400-byte JSON lines.
func ndjsonBody(size int) []byte {
	line := []byte(`{"messageId":"lg-1-0-0000000","source":"dev","type":"track","event":"Video Content Playing","userId":"u12345","timestamp":"2026-11-25T21:00:00.000Z","receivedAt":"2026-11-25T21:00:00.000Z","properties":{"session_id":"p0-1","content_asset_id":"t1s1e2","position":120,"total_length":2700,"title":"Title 1","livestream":false,"quality":"hd","bitrate":4500},"device":{"platform":"tv","type":"tv"}}`)
	out := make([]byte, 0, size)
	for len(out)+len(line)+1 <= size {
		out = append(out, line...)
		out = append(out, '\n')
	}
	for len(out) < size {
		out = append(out, ' ')
	}
	return out
}
