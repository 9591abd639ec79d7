package ingest

import "testing"

// BenchmarkDecodeScan is the scanning part of a request alone: the
// envelope split and each item's fields (no validation, enrichment or
// encoding).
func BenchmarkDecodeScan(b *testing.B) {
	body := benchBatch()
	lim := limits{event: 32 << 10, batch: 500 << 10, items: 2500, depth: 64}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req, err := decodeRequest(body, false, "", lim)
		if err != nil {
			b.Fatal(err)
		}
		for _, raw := range req.items {
			var it item
			if !scanItem(raw, &it) {
				b.Fatal("scanItem failed")
			}
		}
	}
}
