package archive

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
)

// A line as ingest stores it (json.Marshal of event.Event).
const storedLine = `{"messageId":"m-00017","source":"web","type":"track","event":"Video Content Playing",` +
	`"userId":"user-7","timestamp":"2026-01-10T18:03:20.5Z","originalTimestamp":"2026-01-10T18:03:20.5Z",` +
	`"sentAt":"2026-01-10T18:03:21Z","receivedAt":"2026-01-10T18:03:21.25+01:00","skewMs":-12,` +
	`"properties":{"asset_id":"dark-s1e2","position":120.5,"total_length":900,"program":"Dark","season":1,` +
	`"session_id":"p-1","quality":{"h":1080,"v":[1,2.5e3,-0,true,null]}},` +
	`"context":{"library":{"name":"analytics.js"},"locale":"de-DE"},"ip":"203.0.113.9","userAgent":"Mozilla/5.0",` +
	`"device":{"platform":"web","type":"desktop","os":"Linux","browser":"Firefox"},"warnings":["a","b"]}`

// eventRowCases cover the fast path and each way out of it.
var eventRowCases = []string{
	storedLine,
	`{"messageId":"m1","source":"ios","type":"page","name":"home","anonymousId":"a1","timestamp":"2026-01-10T18:00:00Z","receivedAt":"2026-01-10T18:00:01Z"}`,
	`{"messageId":"m1","properties":{"content_asset_id":12345,"position_ms":1500,"total_length_ms":null,"playback_session_id":"x"}}`,
	`{"messageId":"m1","properties":{"asset_id":"","content_asset_id":"\u0041b","title_id":7,"session_id":null,"playback_session_id":""}}`,
	`{"messageId":"m1","properties":{"asset_id":null,"content_asset_id":"c"}}`,
	`{"messageId":"m1","properties":{"asset_id":true,"title_id":[1],"content_asset_id":-1.5e3}}`,
	`{"messageId":"m1","properties":{"position":"12"}}`,
	`{"messageId":"m1","properties":{"position":1e400,"asset_id":"a"}}`,
	`{"messageId":"m1","properties":{"Position":3,"ASSET_ID":"x"}}`,
	`{"messageId":"m1","properties":{"position":1,"position":null,"total_length":2,"total_length":3}}`,
	`{"messageId":"m1","properties":{"position":1},"properties":{"asset_id":"y"}}`,
	`{"messageId":"m1","properties":{"position":1},"properties":null}`,
	`{"messageId":"m1","properties":[1,2]}`,
	`{"messageId":"m1","properties":"str","traits":null,"context":{"a":1},"context":[]}`,
	`{"messageId":"m\u00e91","userId":"\ud83d\ude00 caf\u00e9","type":"track"}`,
	`{"messageId":"m1","userId":"caf` + "\xc3\xa9" + `","name":"bad ` + "\xff" + ` utf8"}`,
	`{"MessageId":"m1","USERID":"u"}`,
	`{"messageid":null}`,
	`{"userId":null,"anonymousId":"a","bot":null,"skewMs":null,"warnings":null,"device":null,"timestamp":null}`,
	`{"userId":"u","device":{"platform":"tv","Os":"x"}}`,
	`{"userId":"u","device":{"platform":"tv"},"device":{"os":"x","platform":null}}`,
	`{"userId":"u","warnings":["a","b"],"warnings":["c"]}`,
	`{"userId":"u","warnings":["a",null]}`,
	`{"userId":"u","warnings":["a\nb"]}`,
	`{"userId":"u","warnings":[]}`,
	`{"userId":"u","timestamp":"2026-13-01T00:00:00Z"}`,
	`{"userId":"u","timestamp":"2026-01-01T00:00:00\u005a"}`,
	`{"userId":"u","timestamp":"2026-01-01T23:30:00-05:00"}`,
	`{"userId":"u","skewMs":1.5}`,
	`{"userId":"u","skewMs":99999999999999999999}`,
	`{"userId":5}`,
	`{"userId":"u","bot":"yes"}`,
	`{"userId":"u","bot":true,"ip":"1","previousId":"p","groupId":null,"integrations":{"All":false}}`,
	`{"userId":"u","previousId":3}`,
	`{"userId":"u","extra":{"deep":[[[[]]]]},"other":null}`,
	`{"userId":"u"} x`,
	`{"userId":"u",}`,
	`{"userId":"u","a":01}`,
	`null`,
	`[]`,
	`{}`,
	` {"userId" : "u" } `,
}

func TestDecodeEventRowMatchesEncodingJSON(t *testing.T) {
	for _, c := range eventRowCases {
		checkEventRow(t, []byte(c))
	}
}

// The fast path must take the lines ingest writes.
func TestDecodeEventRowFastPath(t *testing.T) {
	m := benchMessage(t)
	lines := [][]byte{[]byte(storedLine)}
	_ = event.Lines(m.Data, func(_ int, line []byte) error {
		lines = append(lines, line)
		return nil
	})
	for _, line := range lines {
		var es eventScan
		require.True(t, es.scan(line, strCache{}), "%s", line)
		checkEventRow(t, line)
	}
	var es eventScan
	require.True(t, es.scan([]byte(storedLine), strCache{}))
	require.Equal(t, "dark-s1e2", es.row.AssetID)
	require.Equal(t, "p-1", es.row.PlaybackSessionID)
	require.Equal(t, 120.5, *es.row.PositionS)
	require.Equal(t, "a,b", es.row.Warnings)
}

func FuzzDecodeEventRow(f *testing.F) {
	for _, c := range eventRowCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkEventRow(t, line) })
}

// checkEventRow compares decodeEventRow with the reference: json.Unmarshal
// into event.Event, then newEventRow.
func checkEventRow(t *testing.T, line []byte) {
	t.Helper()
	pos := event.Position{Seq: 9, Index: 3}
	var e event.Event
	wantErr := json.Unmarshal(line, &e)
	row, ts, err := decodeEventRow(line, pos, strCache{})
	if wantErr != nil {
		require.Error(t, err, "line %q", line)
		require.Equal(t, wantErr.Error(), err.Error(), "line %q", line)
		return
	}
	require.NoError(t, err, "line %q", line)
	require.Equal(t, newEventRow(&e, pos), row, "line %q", line)
	require.True(t, e.Timestamp.Equal(ts) && e.Timestamp.Location().String() == ts.Location().String(), "line %q", line)
	require.Equal(t, partitionOf(e.Timestamp), partitionOf(ts))
}
