package loadgen

import (
	"testing"
	"time"
)

// BenchmarkBuildBatch measures the generator's cost per event: population
// step, JSON encoding and the batch envelope (ns/op is per event).
func BenchmarkBuildBatch(b *testing.B) {
	for _, tc := range []struct {
		name string
		gz   bool
	}{{"plain", false}, {"gzip", true}} {
		b.Run(tc.name, func(b *testing.B) {
			g, err := NewGenerator(DefaultPopulation(), ShapeNode.Library(), 0, 1)
			if err != nil {
				b.Fatal(err)
			}
			enc := newEncoder(ShapeNode, "wk_bench", tc.gz, 0)
			var req request
			now := time.Now()
			enc.build(g, 100, now, &req)
			b.SetBytes(int64(len(enc.raw) / 100))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += 100 {
				enc.build(g, 100, now, &req)
			}
		})
	}
}
