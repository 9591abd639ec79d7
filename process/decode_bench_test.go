package process

import (
	"testing"
)

// BenchmarkDecode is the sessionizer's decoding of one stored event line
// (the fast path, with a warm interner).
func BenchmarkDecode(b *testing.B) {
	line := []byte(ingestLine)
	in := newInterner()
	var f fields
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if !f.decode(line, in) {
			b.Fatal("decode failed")
		}
	}
}
