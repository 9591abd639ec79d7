package event

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestPartitionIsStableAndSpread(t *testing.T) {
	// Fixed values: changing the hash would move every user to another
	// partition of an existing data dir.
	for _, tc := range []struct {
		key     string
		n, want int
	}{{"user-1", 32, 20}, {"", 32, 5}, {"anon-42", 32, 28}, {"user-1", 7, 3}, {"anon-42", 7, 6}} {
		if got := Partition(tc.key, tc.n); got != tc.want {
			t.Fatalf("Partition(%q, %d) = %d, want %d", tc.key, tc.n, got, tc.want)
		}
	}
	counts := make([]int, 8)
	for i := range 8000 {
		counts[Partition("u"+string(rune('a'+i%26))+time.Duration(i).String(), 8)]++
	}
	for p, n := range counts {
		if n < 700 || n > 1300 {
			t.Fatalf("partition %d got %d of 8000 keys: the hash does not spread", p, n)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	ts := time.Date(2026, 11, 25, 19, 33, 30, 711135496, time.UTC)
	in := []Event{
		{MessageID: "a", Source: "web", Type: TypeTrack, Event: "Video Playback Started", UserID: "u1",
			Timestamp: ts, OriginalTimestamp: ts, ReceivedAt: ts, Properties: json.RawMessage(`{"title":"line\nbreak"}`)},
		{MessageID: "b", Source: "web", Type: TypePage, Name: "Home", AnonymousID: "anon", Timestamp: ts, ReceivedAt: ts},
	}
	var enc Encoder
	for i := range in {
		if err := enc.Append(&in[i]); err != nil {
			t.Fatal(err)
		}
	}
	if enc.Count() != 2 {
		t.Fatalf("count %d", enc.Count())
	}
	out, err := Decode(enc.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].MessageID != "a" || out[1].UserKey() != "anon" || string(out[0].Properties) != `{"title":"line\nbreak"}` {
		t.Fatalf("round trip changed events: %+v", out)
	}
	if !out[0].Timestamp.Equal(ts) {
		t.Fatalf("timestamp %v", out[0].Timestamp)
	}
	if _, err := Decode([]byte("{\"messageId\":\"x\"}\nnot json")); !errors.Is(err, ErrCorruptMessage) {
		t.Fatalf("corrupt line: %v", err)
	}
}

func TestPositionOrder(t *testing.T) {
	a, b, c := Position{Seq: 1, Index: 5}, Position{Seq: 2, Index: 0}, Position{Seq: 2, Index: 1}
	if !a.Less(b) || !b.Less(c) || c.Less(a) || a.Less(a) {
		t.Fatal("positions are not ordered by (seq, index)")
	}
	if c.String() != "2:1" {
		t.Fatal(c.String())
	}
}
