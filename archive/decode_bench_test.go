package archive

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// benchMessage is one group-commit message of 200 events as ingest writes
// them: Video Spec properties, context, device, user agent.
func benchMessage(tb testing.TB) *event.Message {
	var enc event.Encoder
	ts := time.Date(2026, 11, 25, 19, 34, 33, 0, time.UTC)
	for i := range 200 {
		t := ts.Add(time.Duration(i) * 713 * time.Millisecond)
		e := event.Event{
			MessageID: fmt.Sprintf("lg-1-3-%d", 100000+i), Source: "web", Type: event.TypeTrack,
			Event: "Video Content Playing", UserID: fmt.Sprintf("user-%05d", i*37),
			Timestamp: t, OriginalTimestamp: t, SentAt: t.Add(300 * time.Millisecond), ReceivedAt: t.Add(time.Second),
			SkewMillis: -12,
			Properties: json.RawMessage(fmt.Sprintf(`{"content_asset_id":"t%ds1e%d","position":%d,"total_length":2640,`+
				`"session_id":"play-%d","livestream":false,"program":"Title %d","season":1,"episode":%d,"quality":"hd"}`,
				i%40, i%9, i*10, i%17, i%40, i%9)),
			Context: json.RawMessage(`{"library":{"name":"analytics-node","version":"2.1.0"},` +
				`"userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}`),
			IP:        "203.0.113.9",
			UserAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
			Device:    event.Device{Platform: "web", Type: "desktop", OS: "Windows", Browser: "Chrome"},
		}
		if err := enc.Append(&e); err != nil {
			tb.Fatal(err)
		}
	}
	return &event.Message{Seq: 7, Data: append([]byte(nil), enc.Bytes()...)}
}

// BenchmarkDecodeEvents is the archive's decoding of one events message
// into rows (before Parquet encoding).
func BenchmarkDecodeEvents(b *testing.B) {
	m := benchMessage(b)
	b.SetBytes(int64(len(m.Data)))
	b.ReportAllocs()
	for b.Loop() {
		rows, bad := decodeEvents(m)
		if len(rows) != 200 || len(bad) != 0 {
			b.Fatalf("%d rows, %d bad", len(rows), len(bad))
		}
	}
	b.ReportMetric(float64(b.N*200)/b.Elapsed().Seconds(), "events/s")
}
