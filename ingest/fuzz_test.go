package ingest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// seedPayloads adds the captured SDK requests (SEGMENT-API.md section 8)
// and their items to a fuzz corpus.
func seedPayloads(f *testing.F, items bool) {
	paths, err := filepath.Glob("testdata/sdk-payloads/*.json")
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed payloads: %v", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		single := strings.HasSuffix(p, "-t.json")
		if !items {
			f.Add(b, single)
			continue
		}
		var env envelope
		if json.Unmarshal(b, &env) == nil && env.Batch != nil {
			for _, it := range env.Batch {
				f.Add([]byte(it), false)
			}
		} else {
			f.Add(b, true)
		}
	}
	f.Add([]byte(`{"batch":[{"type":"track","userId":12,"event":"\u0000","timestamp":"2015-2-02T00:30:08.276Z"}]}`), false)
	f.Add([]byte(`[[[[`), true)
}

// FuzzDecodeRequest: the request decoder never panics, and whatever it
// accepts normalises into events that encode and decode losslessly.
func FuzzDecodeRequest(f *testing.F) {
	seedPayloads(f, false)
	n := normaliser{cfg: DefaultConfig()}
	lim := limits{event: 32 << 10, batch: 500 << 10, items: 2500, depth: 64}
	f.Fuzz(func(t *testing.T, body []byte, single bool) {
		req, err := decodeRequest(body, single, "", lim)
		if err != nil {
			return
		}
		m := &reqMeta{receivedAt: time.Now(), sentAt: req.sentAt, batchCtx: req.context, batchInteg: req.integrations, source: "s"}
		for _, raw := range req.items {
			roundTrip(t, &n, raw, m)
		}
	})
}

// FuzzNormalise: any item either is rejected with a known reason or
// becomes an event that survives the group-commit codec.
func FuzzNormalise(f *testing.F) {
	seedPayloads(f, true)
	n := normaliser{cfg: DefaultConfig(), anonIP: true}
	f.Fuzz(func(t *testing.T, raw []byte, implied bool) {
		if !json.Valid(raw) {
			return // the request decoder rejects these before items exist
		}
		m := &reqMeta{receivedAt: time.Now(), source: "s", clientIP: "192.0.2.1"}
		if implied {
			m.implied = event.TypeTrack
		}
		roundTrip(t, &n, raw, m)
	})
}

func roundTrip(t *testing.T, n *normaliser, raw json.RawMessage, m *reqMeta) {
	ev, bad := n.normalise(raw, m)
	if bad != nil {
		if bad.reason == "" {
			t.Fatalf("rejection without reason: %v", bad)
		}
		return
	}
	if ev.MessageID == "" || ev.UserKey() == "" || ev.Timestamp.IsZero() {
		t.Fatalf("incomplete event: %+v", ev)
	}
	line, err := appendEvent(nil, ev)
	if err != nil {
		return // counted as invalid_item by the handler
	}
	// The direct encoder must produce the same JSON value as json.Marshal
	// (bytes may differ: json.Marshal escapes <, >, & and compacts raw
	// objects; both are the same value).
	want, err := json.Marshal(ev)
	if err != nil {
		t.Fatalf("json.Marshal of a normalised event: %v", err)
	}
	var a, b any
	if err := json.Unmarshal(line, &a); err != nil {
		t.Fatalf("appendEvent wrote invalid JSON: %v\n%s", err, line)
	}
	if err := json.Unmarshal(want, &b); err != nil || !reflect.DeepEqual(a, b) {
		t.Fatalf("appendEvent differs from json.Marshal:\n%s\n%s", line, want)
	}
	var enc event.Encoder
	enc.AppendEncoded(line)
	enc.AppendEncoded(line)
	evs, err := event.Decode(enc.Bytes())
	if err != nil || len(evs) != 2 || evs[0].MessageID != ev.MessageID {
		t.Fatalf("codec round trip: %v, %d events", err, len(evs))
	}
}
