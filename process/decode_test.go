package process

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
)

// An ingest line as the buffer stores it (json.Marshal of event.Event).
const ingestLine = `{"messageId":"m-00017","source":"web","type":"track","event":"Video Content Playing",` +
	`"userId":"user-7","timestamp":"2026-01-10T18:03:20.5Z","originalTimestamp":"2026-01-10T18:03:20.5Z",` +
	`"sentAt":"2026-01-10T18:03:21Z","receivedAt":"2026-01-10T18:03:21.25+01:00","skewMs":-12,` +
	`"properties":{"asset_id":"dark-s1e2","position":120.5,"total_length":900,"program":"Dark","season":1,` +
	`"episode":"2","next_episode_asset_id":"dark-s1e3","session_id":"p-1","quality":{"h":1080,"v":[1,2.5e3,-0,true,null]}},` +
	`"context":{"library":{"name":"analytics.js"},"locale":"de-DE"},"ip":"203.0.113.9","userAgent":"Mozilla/5.0",` +
	`"device":{"platform":"web","type":"desktop","os":"Linux","browser":"Firefox"},"warnings":["a","b"]}`

// decodeCases cover the fast path and each way out of it.
var decodeCases = []string{
	ingestLine,
	`{"messageId":"m1","source":"ios","type":"page","name":"home","anonymousId":"a1","timestamp":"2026-01-10T18:00:00Z","receivedAt":"2026-01-10T18:00:01Z"}`,
	`{"messageId":"m1","source":"ios","type":"screen","anonymousId":"a1","properties":{"path":"/title","name":null}}`,
	`{"messageId":"m1","type":"track","event":"Video Playback Started","userId":"u","properties":{"content_asset_id":12345,"position":null,"preview":true,"content_type":"Trailer"}}`,
	`  {"messageId" : "m\u00e91" , "userId":"\ud83d\ude00 caf\u00e9" , "type":"track"}  `,
	`{"messageId":"m1","userId":"caf` + "\xc3\xa9" + `","name":"bad ` + "\xff" + ` utf8"}`,
	`{"MessageId":"m1","USERID":"u"}`,
	`{"messageid":"m1","properties":{"Position":3,"ASSET_ID":"x"}}`,
	`{"userId":"u","properties":{"position":1},"properties":{"asset_id":"y"}}`,
	`{"userId":"u","properties":{"position":1,"position":null,"position":2,"title":"a","title":7}}`,
	`{"userId":"u","device":{"platform":"tv"},"device":{"os":"x"}}`,
	`{"userId":"u","properties":{"position":"12","total_length":true,"season":{"n":1}}}`,
	`{"userId":"u","properties":{"position":1e400}}`,
	`{"userId":"u","properties":[1,2]}`,
	`{"userId":"u","properties":null}`,
	`{"userId":"u","properties":"str"}`,
	`{"userId":null,"anonymousId":"a","bot":null,"skewMs":null,"warnings":null}`,
	`{"userId":"u","timestamp":"2026-13-01T00:00:00Z"}`,
	`{"userId":"u","timestamp":null}`,
	`{"userId":"u","timestamp":"2026-01-01T00:00:00\u005a"}`,
	`{"userId":"u","skewMs":1.5}`,
	`{"userId":"u","skewMs":99999999999999999999}`,
	`{"userId":5}`,
	`{"userId":"u","bot":"yes"}`,
	`{"userId":"u","warnings":["a",1]}`,
	`{"userId":"u","device":"web"}`,
	`{"userId":"u","traits":{"a":[{"b":{}}],"k\u00e9y":1}}`,
	`{"userId":"u","context":{"` + "\xc3\xa9" + `":1}}`,
	`{"userId":"u"} x`,
	`{"userId":"u",}`,
	`{"userId":"u" "a":1}`,
	`{"userId":"u","a":01}`,
	`{"userId":"u","a":-}`,
	`{"userId":"u","a":1.}`,
	`{"userId":"u","a":1e}`,
	`{"userId":"u","a":"\x"}`,
	`{"userId":"u","a":"\u12g4"}`,
	`{"userId":"u","a":"tab	in"}`,
	`{"userId":"u","a":tru}`,
	`{"userId":"u"`,
	`[]`,
	`null`,
	`"str"`,
	` `,
	`{}`,
	`{"userId":"u","properties":{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}`,
	`{"userId":"u","properties":{"episode":-0.5e+2,"season":"3","credits_start":850,"livestream":false}}`,
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	for _, c := range decodeCases {
		checkDecode(t, []byte(c))
	}
}

// The fast path must take the lines ingest writes.
func TestDecodeFastPath(t *testing.T) {
	var f fields
	s := scanner{b: []byte(ingestLine), in: newInterner()}
	require.True(t, s.event(&f))
	require.Equal(t, "dark-s1e2", f.p.Asset())
	require.Equal(t, flexString("1"), f.p.Season)
	pos, ok := f.p.PositionMillis()
	require.True(t, ok)
	require.Equal(t, int64(120500), pos)
}

func FuzzDecode(f *testing.F) {
	for _, c := range decodeCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkDecode(t, line) })
}

// checkDecode compares decode with the reference: json.Unmarshal into
// event.Event, then fromEvent.
func checkDecode(t *testing.T, line []byte) {
	t.Helper()
	var ev event.Event
	wantOK := json.Unmarshal(line, &ev) == nil
	var want, got fields
	if wantOK {
		want.fromEvent(&ev)
	}
	require.Equal(t, wantOK, got.decode(line, newInterner()), "line %q", line)
	if !wantOK {
		return
	}
	norm := func(f fields) fields {
		if len(f.traits) == 0 {
			f.traits = nil
		}
		return f
	}
	opt := cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) && a.Location().String() == b.Location().String() })
	if d := cmp.Diff(norm(want), norm(got), cmp.AllowUnexported(fields{}), opt); d != "" {
		t.Fatalf("line %q: decode differs (-want +got):\n%s", line, d)
	}
}
