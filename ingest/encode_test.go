package ingest

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
)

func TestAppendEventMatchesMarshal(t *testing.T) {
	// A new field in event.Event must be added to appendEvent too.
	require.Equal(t, 23, reflect.TypeFor[event.Event]().NumField(), "event.Event changed: update appendEvent")
	ts := time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	cases := []event.Event{
		{MessageID: "m", Source: "s", Type: "track", Timestamp: ts, OriginalTimestamp: ts, ReceivedAt: ts},
		{
			MessageID: "m\"1\\<>&\u2028\x01", Source: "web", Type: "track", Event: "Play ▶", Name: "n", UserID: "u\n",
			AnonymousID: "a", PreviousID: "p", GroupID: "g", Timestamp: ts, OriginalTimestamp: ts.Add(time.Hour),
			SentAt: ts, ReceivedAt: ts.UTC(), SkewMillis: -3600000,
			Properties: json.RawMessage(`{"a":1}`), Traits: json.RawMessage(`{"b":[1,2]}`),
			Context: json.RawMessage(`{"library":{"name":"x"}}`), Integrations: json.RawMessage(`{"All":true}`),
			IP: "192.0.2.0", UserAgent: "Mozilla/5.0", Device: event.Device{Type: "tv", Browser: "Chrome"}, Bot: true,
			Warnings: []string{"ignored_invalid_timestamp", "clamped_future_timestamp"},
		},
		{MessageID: "m", Properties: json.RawMessage("{\n  \"pretty\": true\n}"), Device: event.Device{Platform: "web"}},
	}
	for i, ev := range cases {
		want, err := json.Marshal(&ev)
		require.NoError(t, err)
		got, err := appendEvent(nil, &ev)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "case %d", i)
	}
}
