package ingest

import (
	"encoding/json"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/jsonscan"
)

var diffLimits = limits{event: 32 << 10, batch: 500 << 10, items: 2500, depth: 64}

// diffMetas are the request contexts every item is normalised under.
func diffMetas(req *request) []*reqMeta {
	recv := time.Date(2026, 11, 25, 19, 34, 35, 123456789, time.UTC)
	base := reqMeta{source: "web", receivedAt: recv, clientIP: "192.0.2.77", headerUA: "analytics-node-next/latest"}
	out := []*reqMeta{}
	if req != nil {
		m := base
		m.sentAt, m.batchCtx, m.batchInteg, m.implied = req.sentAt, req.context, req.integrations, req.impliedType
		out = append(out, &m)
	}
	bare := base
	withBatch := base
	withBatch.sentAt = "2026-11-25T18:34:34.000Z"
	withBatch.batchCtx = json.RawMessage(`{"library":{"name":"analytics-go","version":"3.0.0"},"ip":"198.51.100.9","z":[1,{"a":"b"}]}`)
	withBatch.batchInteg = json.RawMessage(`{"All":true,"Amplitude":false}`)
	implied := base
	implied.implied = event.TypePage
	implied.headerUA = ""
	return append(out, &bare, &withBatch, &implied)
}

// checkSameNormalise asserts that the fast normaliser and the reference
// store byte-identical lines (a generated messageId aside) or reject with
// the same reason, detail and messageId.
func checkSameNormalise(t *testing.T, raw json.RawMessage, m *reqMeta) {
	t.Helper()
	for _, anon := range []bool{false, true} {
		n := newNormaliser(DefaultConfig(), nil)
		n.anonIP = anon
		got, gotBad := n.normalise(raw, m)
		want, wantBad := n.refNormalise(raw, m)
		if wantBad != nil || gotBad != nil {
			if wantBad != nil && gotBad != nil && !strings.Contains(string(raw), wantBad.messageID) {
				gotBad.messageID, wantBad.messageID = "generated", "generated"
			}
			if wantBad == nil || gotBad == nil || *wantBad != *gotBad {
				t.Fatalf("item %q anon=%v: rejection differs:\nfast %+v\nref  %+v", raw, anon, gotBad, wantBad)
			}
			continue
		}
		if !strings.Contains(string(raw), want.MessageID) {
			got.MessageID, want.MessageID = "generated", "generated" // random on both sides
		}
		gl, gerr := appendEvent(nil, got)
		wl, werr := refAppendEvent(nil, want)
		if (gerr == nil) != (werr == nil) || string(gl) != string(wl) {
			t.Fatalf("item %q anon=%v: stored line differs:\nfast %s (%v)\nref  %s (%v)", raw, anon, gl, gerr, wl, werr)
		}
	}
}

// checkSameRequest asserts that the fast request decoder answers like
// decodeRequestStd, and that every item normalises identically.
func checkSameRequest(t *testing.T, body []byte, single bool, implied string) {
	t.Helper()
	got, gerr := decodeRequest(body, single, implied, diffLimits)
	want, werr := decodeRequestStd(body, single, implied, diffLimits)
	if werr != nil || gerr != nil {
		if werr == nil || gerr == nil || werr.Error() != gerr.Error() || statusOf(werr) != statusOf(gerr) {
			t.Fatalf("body %q: error differs: fast %v, std %v", body, gerr, werr)
		}
		return
	}
	require.Equal(t, len(want.items), len(got.items), "item count")
	for i := range want.items {
		require.Equal(t, string(want.items[i]), string(got.items[i]), "item %d", i)
	}
	require.Equal(t, want.writeKey, got.writeKey)
	require.Equal(t, want.sentAt, got.sentAt)
	require.Equal(t, string(want.context), string(got.context))
	require.Equal(t, string(want.integrations), string(got.integrations))
	require.Equal(t, want.impliedType, got.impliedType)
	for _, raw := range want.items {
		for _, m := range diffMetas(want) {
			checkSameNormalise(t, raw, m)
		}
	}
}

// diffSeeds are hand-written bodies aimed at encoding/json's leniencies
// and the fast path's fallbacks.
var diffSeeds = []string{
	`{"batch":[{"type":"track","event":"E","userId":"u","context":{"ip":"203.0.113.5","userAgent":"Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)"}}]}`,
	`{"BATCH":[{"type":"track","event":"E","userId":"u"}]}`,
	`{"batch":[{"Type":"track","EVENT":"E","userid":"u"}],"WriteKey":"k"}`,
	`{"batch":[{"type":"track","event":"E","userId":"u"}],"batch":null}`,
	`{"batch":[{"type":"track","event":"E","userId":"u"}],"batch":[{"type":"page","anonymousId":7}]}`,
	`{"batch":[{"type":"track","event":"E","event":null,"userId":"u","userId":null,"anonymousId":-1.5e3}]}`,
	`{"batch":[{"type":"track","event":5,"userId":"u"}]}`,
	`{"batch":[{"type":"track","event":"E","userId":{}}]}`,
	`{"batch":[{"type":"tr\u0061ck","event":"\ud800x<>&\u2028","userId":"\u00e9"}],"sentAt":"2026-11-25T18:34:34Z"}`,
	`{"batch":[{"t\u0079pe":"track","event":"E","userId":"u"}]}`,
	`{"batch":[{"ſentAt":"x","type":"track","event":"E","userId":"u","Kontext":{}}]}`,
	`{"batch":[{"type":"identify","userId":"u","context":{"library":{"name":"analytics.js"},"library":{"version":"1"}}}]}`,
	`{"batch":[{"type":"identify","userId":"u","context":{"library":"x","userAgent":"Googlebot"}}]}`,
	`{"batch":[{"type":"identify","userId":"u","context":{"Library":{"Name":"analytics.js"}}}]}`,
	`{"batch":[{"type":"identify","userId":"u","context":{"device":{"type":"TV"},"os":{"name":"Roku"},"ip":null}}]}`,
	`{"batch":[{"type":"identify","userId":"u","context":[1]}],"context":{"a":1}}`,
	`{"batch":[{"type":"identify","userId":"u","context":{"b":"<x>","a":1,"a":2}}],"context":{"a":3,"c":{ "d" : 1 }}}`,
	`{"batch":[{"type":"identify","userId":"u","context":{}}],"context":{"b":1,"a":2},"integrations":null}`,
	`{"batch":[{"type":"identify","userId":"u","context":{ }}],"context":{"b":1,"a":2}}`,
	`{"batch":[{"type":"identify","userId":"u","context":{"ip":"2001:db8:1:2::5"},"integrations":{"All":false}}],"integrations":{"All":true,"X":1}}`,
	`{"batch":[{"type":"identify","userId":"u","context":5}],"context":{"a":1}}`,
	`{"batch":[{"type":"identify","userId":"u","context":"s","properties":null,"traits":[1]}]}`,
	`{"batch":[null,5,"x",[],{}]}`,
	`{"batch":[{"type":"alias","userId":"u","previousId":12}]}`,
	`{"batch":[{"type":"group","userId":"u","groupId":"g","timestamp":"2015-2-02T00:30:08.276Z","sentAt":"bad"}]}`,
	`{"batch":[{"type":"page","userId":"u","timestamp":"2026-11-25T13:00:00+01:00","originalTimestamp":"2026-11-24T13:00:00Z"}]}`,
	`{"batch":[]}`,
	`{"batch":{}}`,
	`{"batch":[1,]}`,
	`{"batch":[{"type":"track","event":"E","userId":"u"}]} x`,
	"{\"batch\":[{\"type\":\"track\",\"event\":\"E\xff\",\"userId\":\"u\"}]}",
	" \u00a0{\"batch\":[]}\u00a0",
	`{"writeKey":"k","type":"track","event":"E","userId":"u","sentAt":"2026-11-25T18:34:34.5Z"}`,
	`{"writeKey":5,"type":"track","event":"E","userId":"u"}`,
	`{"writekey":"k","type":"track","event":"E","userId":"u"}`,
	`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
	`null`,
	``,
	`{"batch":[{"type":"track","event":"E","userId":"u","properties":{"a":  1,
	 "b":"x"}}]}`,
	`{"batch":[{"type":"track","event":"E","userId":01}]}`,
	`{"batch":[{"type":"track","event":"E","userId":"u","x":tru}]}`,
}

func addDiffSeeds(f *testing.F) {
	seedPayloads(f, false)
	for _, s := range diffSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
}

// FuzzDecodeDifferential: the fast request decoder and normaliser store
// exactly what the encoding/json implementation they replace stored.
func FuzzDecodeDifferential(f *testing.F) {
	addDiffSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte, single bool) {
		implied := ""
		if single {
			implied = event.TypeTrack
		}
		checkSameRequest(t, body, single, implied)
	})
}

// FuzzNormaliseDifferential feeds items directly (as FuzzNormalise does),
// including ones a request would have rejected for invalid UTF-8.
func FuzzNormaliseDifferential(f *testing.F) {
	seedPayloads(f, true)
	for _, s := range diffSeeds {
		var env envelope
		if json.Unmarshal([]byte(s), &env) == nil {
			for _, it := range env.Batch {
				f.Add([]byte(it), false)
			}
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, implied bool) {
		if !json.Valid(raw) {
			return
		}
		for _, m := range diffMetas(nil) {
			if implied && m.implied == "" {
				m.implied = event.TypeTrack
			}
			checkSameNormalise(t, raw, m)
		}
	})
}

// TestFastPathCoversSDKPayloads: the captured SDK requests take the fast
// path all the way (no fallback to encoding/json), so the benchmarks and
// the differential tests measure and check the new code.
func TestFastPathCoversSDKPayloads(t *testing.T) {
	paths, err := filepath.Glob("testdata/sdk-payloads/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, p := range paths {
		body, err := os.ReadFile(p)
		require.NoError(t, err)
		single := strings.HasSuffix(p, "-t.json")
		req, ok := scanRequest(body, single, "", diffLimits)
		require.True(t, ok, "%s: request fell back", p)
		for _, raw := range req.items {
			var it item
			require.True(t, scanItem(raw, &it), "%s: item fell back: %s", p, raw)
			if len(it.Context) > 0 {
				require.True(t, scanContext(it.Context, &itemContext{}, nil), "%s: context fell back", p)
			}
		}
		checkSameRequest(t, body, single, "")
	}
	for _, body := range [][]byte{benchBatch(), goBatch()} {
		req, ok := scanRequest(body, false, "", diffLimits)
		require.True(t, ok)
		for _, raw := range req.items {
			var it item
			require.True(t, scanItem(raw, &it))
			if len(req.context) > 0 {
				_, ok := appendMembers(nil, it.Context, true)
				require.True(t, ok, "context merge fell back")
			}
		}
		checkSameRequest(t, body, false, "")
	}
}

func TestSpecialBytes(t *testing.T) {
	special := func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 || c >= 0x80 }
	r := uint64(0x9e3779b97f4a7c15)
	interesting := []byte{0, 0x1f, 0x20, '!', '"', '#', '[', '\\', ']', 0x7f, 0x80, 0x9f, 0xa0, 0xff, 'a'}
	for n := 0; n < 200000; n++ {
		var w [8]byte
		for i := range w {
			r ^= r << 13
			r ^= r >> 7
			r ^= r << 17
			w[i] = interesting[r%uint64(len(interesting))]
			if n%3 == 0 {
				w[i] = byte(r >> 8)
			}
		}
		first := 8
		for i, c := range w {
			if special(c) {
				first = i
				break
			}
		}
		m := jsonscan.SpecialBytes(uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56)
		got := 8
		if m != 0 {
			got = bits.TrailingZeros64(m) >> 3
		}
		if got != first {
			t.Fatalf("%q: first special at %d, specialBytes says %d", w, first, got)
		}
	}
}

func TestAppendStringMatchesReference(t *testing.T) {
	pieces := []string{"a", "0123456789abcdef", "\"", "\\", "<", ">", "&", "\n", "\x01", "\x7f", "é", "\u2028", "\xff", "Mozilla/5.0 (X11; Linux x86_64)"}
	r := uint64(1)
	for n := 0; n < 20000; n++ {
		var b strings.Builder
		for k := int(r % 7); k >= 0; k-- {
			r = r*6364136223846793005 + 1442695040888963407
			b.WriteString(pieces[(r>>33)%uint64(len(pieces))])
		}
		s := b.String()
		if got, want := appendString(nil, s), refAppendString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	}
}

func TestLineBufferMatchesEncoder(t *testing.T) {
	var enc event.Encoder
	l := lineBuffer{buf: make([]byte, 0, 8)}
	for i, line := range []string{`{"a":1}`, `{}`, `{"b":"x\ny"}`, strings.Repeat("z", 100)} {
		enc.AppendEncoded([]byte(line))
		l.AppendEncoded([]byte(line))
		require.Equal(t, string(enc.Bytes()), string(l.Bytes()), "after line %d", i)
		require.Equal(t, enc.Len(), l.Len())
		require.Equal(t, enc.Count(), l.Count())
	}
}
