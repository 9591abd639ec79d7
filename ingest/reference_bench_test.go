package ingest

import (
	"strings"
	"testing"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// goBatch is benchBatch as analytics-go sends it: batch-level context
// (merged into every item, which has its own context) and sentAt.
func goBatch() []byte {
	b := string(benchBatch())
	b = strings.Replace(b, `"writeKey":"`+keyWeb+`",`, `"messageId":"lgb-1",`, 1)
	return []byte(strings.TrimSuffix(b, "}") + `,"context":{"library":{"name":"analytics-go","version":"3.0.0"}}}`)
}

// BenchmarkDecodeNormaliseVsReference runs the same work as
// BenchmarkDecodeNormalise through the current code ("new") and through
// the pre-change encoding/json implementation kept in reference_test.go
// ("reference"), in one binary so that both see the same machine load.
func BenchmarkDecodeNormaliseVsReference(b *testing.B) {
	for _, shape := range []struct {
		name string
		body []byte
	}{{"node", benchBatch()}, {"go", goBatch()}} {
		b.Run("shape="+shape.name+"/impl=new", func(b *testing.B) {
			benchPath(b, shape.body, false)
		})
		b.Run("shape="+shape.name+"/impl=reference", func(b *testing.B) {
			benchPath(b, shape.body, true)
		})
	}
}

func benchPath(b *testing.B, body []byte, ref bool) {
	n := newNormaliser(DefaultConfig(), nil)
	line := make([]byte, 0, 1024)
	var ev event.Event
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var req *request
		var err error
		if ref {
			req, err = decodeRequestStd(body, false, "", diffLimits)
		} else {
			req, err = decodeRequest(body, false, "", diffLimits)
		}
		if err != nil {
			b.Fatal(err)
		}
		m := &reqMeta{receivedAt: time.Now(), sentAt: req.sentAt, source: "web", clientIP: "192.0.2.1",
			batchCtx: req.context, batchInteg: req.integrations}
		for _, raw := range req.items {
			if ref {
				e, bad := n.refNormalise(raw, m)
				if bad != nil {
					b.Fatal(bad)
				}
				line, err = refAppendEvent(line[:0], e)
			} else {
				if bad := n.normaliseInto(&ev, raw, m); bad != nil {
					b.Fatal(bad)
				}
				line, err = appendEvent(line[:0], &ev)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}
