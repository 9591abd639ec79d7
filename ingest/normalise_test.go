package ingest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
)

func TestClockSkewCorrection(t *testing.T) {
	recv := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ts := func(d time.Duration) string { return recv.Add(d).Format(time.RFC3339Nano) }
	cases := []struct {
		name          string
		item          string
		batchSentAt   string
		wantTimestamp time.Time
		wantOriginal  time.Time
		wantSkewMs    int64
		warning       string
	}{
		{"client 1h fast", `{"timestamp":"` + ts(time.Hour-10*time.Second) + `","sentAt":"` + ts(time.Hour) + `"}`, "",
			recv.Add(-10 * time.Second), recv.Add(time.Hour - 10*time.Second), -3600000, ""},
		{"client 1h slow", `{"timestamp":"` + ts(-time.Hour-10*time.Second) + `","sentAt":"` + ts(-time.Hour) + `"}`, "",
			recv.Add(-10 * time.Second), recv.Add(-time.Hour - 10*time.Second), 3600000, ""},
		{"batch-level sentAt", `{"timestamp":"` + ts(-time.Hour-5*time.Second) + `"}`, ts(-time.Hour),
			recv.Add(-5 * time.Second), recv.Add(-time.Hour - 5*time.Second), 3600000, ""},
		{"below threshold: transit delay not applied", `{"timestamp":"` + ts(-3*time.Second) + `","sentAt":"` + ts(-1500*time.Millisecond) + `"}`, "",
			recv.Add(-3 * time.Second), recv.Add(-3 * time.Second), 0, ""},
		{"at threshold: applied", `{"timestamp":"` + ts(-3*time.Second) + `","sentAt":"` + ts(-2*time.Second) + `"}`, "",
			recv.Add(-time.Second), recv.Add(-3 * time.Second), 2000, ""},
		{"historical import keeps history", `{"timestamp":"2020-01-01T00:00:00Z","sentAt":"` + ts(0) + `"}`, "",
			time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), 0, ""},
		{"future beyond 23h clamped", `{"timestamp":"` + ts(48*time.Hour) + `"}`, "",
			recv, recv.Add(48 * time.Hour), 0, "clamped_future_timestamp"},
		{"future within 23h kept", `{"timestamp":"` + ts(22*time.Hour) + `"}`, "",
			recv.Add(22 * time.Hour), recv.Add(22 * time.Hour), 0, ""},
		{"no timestamp", `{}`, ts(time.Hour), recv, recv, 0, ""},
		{"rudder originalTimestamp", `{"originalTimestamp":"` + ts(-time.Minute) + `"}`, "", recv.Add(-time.Minute), recv.Add(-time.Minute), 0, ""},
		{"invalid timestamp", `{"timestamp":"yesterday"}`, "", recv, recv, 0, "ignored_invalid_timestamp"},
		{"non-padded month", `{"timestamp":"2015-2-02T00:30:08.276Z"}`, "",
			time.Date(2015, 2, 2, 0, 30, 8, 276e6, time.UTC), time.Date(2015, 2, 2, 0, 30, 8, 276e6, time.UTC), 0, ""},
		{"offset timestamp", `{"timestamp":"2026-11-25T13:00:00+01:00"}`, "", recv, recv, 0, ""},
	}
	n := normaliser{cfg: DefaultConfig()}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var it item
			require.NoError(t, json.Unmarshal([]byte(c.item), &it))
			ev := &event.Event{ReceivedAt: recv}
			n.times(ev, &it, &reqMeta{receivedAt: recv, sentAt: c.batchSentAt})
			require.True(t, c.wantTimestamp.Equal(ev.Timestamp), "timestamp %s, want %s", ev.Timestamp, c.wantTimestamp)
			require.True(t, c.wantOriginal.Equal(ev.OriginalTimestamp), "original %s, want %s", ev.OriginalTimestamp, c.wantOriginal)
			require.Equal(t, c.wantSkewMs, ev.SkewMillis)
			if c.warning != "" {
				require.Contains(t, ev.Warnings, c.warning)
			} else {
				require.Empty(t, ev.Warnings)
			}
		})
	}
}

func TestItemValidation(t *testing.T) {
	cases := []struct {
		name, item, implied, reason string
	}{
		{"valid track", `{"type":"track","event":"E","userId":"u"}`, "", ""},
		{"anonymous only", `{"type":"page","anonymousId":"a"}`, "", ""},
		{"numeric userId", `{"type":"identify","userId":12345}`, "", ""},
		{"no ids", `{"type":"track","event":"E"}`, "", event.ReasonNoUserID},
		{"track without event", `{"type":"track","userId":"u"}`, "", event.ReasonNoEvent},
		{"unknown type", `{"type":"purchase","userId":"u"}`, "", event.ReasonUnknownType},
		{"missing type in batch", `{"userId":"u"}`, "", event.ReasonUnknownType},
		{"path implies type", `{"userId":"u","event":"E"}`, "track", ""},
		{"alias without previousId", `{"type":"alias","userId":"u"}`, "", event.ReasonMissingField},
		{"group without groupId", `{"type":"group","userId":"u"}`, "", event.ReasonMissingField},
		{"event is a number", `{"type":"track","event":5,"userId":"u"}`, "", event.ReasonInvalidItem},
		{"userId is an object", `{"type":"track","event":"E","userId":{}}`, "", event.ReasonInvalidItem},
		{"context is an array", `{"type":"track","event":"E","userId":"u","context":[1]}`, "", ""},
		{"NUL in userId", `{"type":"track","event":"E","userId":"victim\u0000s"}`, "", event.ReasonInvalidID},
		{"newline in anonymousId", `{"type":"page","anonymousId":"a\nb"}`, "", event.ReasonInvalidID},
		{"C1 control in messageId", `{"type":"page","anonymousId":"a","messageId":"m\u0085"}`, "", event.ReasonInvalidID},
		{"DEL in groupId", `{"type":"group","userId":"u","groupId":"g\u007f"}`, "", event.ReasonInvalidID},
		{"tab in event name", `{"type":"track","event":"E\tF","userId":"u"}`, "", event.ReasonInvalidID},
		{"NUL in screen name", `{"type":"screen","name":"Home\u0000","userId":"u"}`, "", event.ReasonInvalidID},
		{"NUL in asset id", `{"type":"track","event":"Video Playback Started","userId":"u","properties":{"asset_id":"t\u0000x"}}`, "", event.ReasonInvalidID},
		{"NUL in content_asset_id, escaped key", `{"type":"track","event":"E","userId":"u","properties":{"content\u005fasset_id":"t\u0000x"}}`, "", event.ReasonInvalidID},
		{"control in series_id, key case differs", `{"type":"track","event":"E","userId":"u","properties":{"Series_ID":"s\u0001"}}`, "", event.ReasonInvalidID},
		{"numeric asset id", `{"type":"track","event":"E","userId":"u","properties":{"asset_id":123}}`, "", ""},
		{"unicode ids are fine", `{"type":"track","event":"Lecture démarrée","userId":"ユーザー","properties":{"asset_id":"título"}}`, "", ""},
		{"userId at the cap", `{"type":"track","event":"E","userId":"` + strings.Repeat("u", 256) + `"}`, "", ""},
		{"userId past the cap", `{"type":"track","event":"E","userId":"` + strings.Repeat("u", 257) + `"}`, "", event.ReasonInvalidID},
		{"messageId past the cap", `{"type":"track","event":"E","userId":"u","messageId":"` + strings.Repeat("m", 300) + `"}`, "", event.ReasonInvalidID},
		{"event name past the cap", `{"type":"track","event":"` + strings.Repeat("e", 257) + `","userId":"u"}`, "", event.ReasonInvalidID},
		{"asset id past the cap", `{"type":"track","event":"E","userId":"u","properties":{"next_episode_asset_id":"` + strings.Repeat("a", 257) + `"}}`, "", event.ReasonInvalidID},
		{"properties not an object", `{"type":"track","event":"E","userId":"u","properties":[1]}`, "", ""},
	}
	n := newNormaliser(DefaultConfig(), nil)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, bad := n.normalise(json.RawMessage(c.item), &reqMeta{receivedAt: time.Now(), implied: c.implied, source: "s"})
			if c.reason == "" {
				require.Nil(t, bad)
				require.NotEmpty(t, ev.MessageID)
				return
			}
			require.NotNil(t, bad)
			require.Equal(t, c.reason, bad.reason)
		})
	}
}

func TestBatchContextMergeRejectsBadShapes(t *testing.T) {
	n := normaliser{cfg: DefaultConfig()}
	_, bad := n.normalise(json.RawMessage(`{"type":"track","event":"E","userId":"u","context":[1]}`),
		&reqMeta{receivedAt: time.Now(), batchCtx: json.RawMessage(`{"a":1}`)})
	require.NotNil(t, bad)
	require.Equal(t, event.ReasonInvalidItem, bad.reason)
}

func TestEnrichment(t *testing.T) {
	chrome := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
	iphone := "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
	cases := []struct {
		name     string
		ctx      string
		headerUA string
		anon     bool
		want     event.Device
		ip       string
		bot      bool
	}{
		{"desktop chrome", `{"userAgent":"` + chrome + `"}`, "", false, event.Device{Platform: "web", Type: "desktop", OS: "Windows", Browser: "Chrome"}, "203.0.113.9", false},
		{"iphone safari", `{"userAgent":"` + iphone + `"}`, "", false, event.Device{Platform: "mobile", Type: "phone", OS: "iOS", Browser: "Safari"}, "203.0.113.9", false},
		{"smart tv", `{"userAgent":"Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36"}`, "", false, event.Device{Platform: "tv", Type: "tv", OS: "Tizen"}, "203.0.113.9", false},
		{"server sdk from header", `{}`, "analytics-go (version: 3.0.0)", false, event.Device{Platform: "server", Type: "server"}, "203.0.113.9", false},
		{"googlebot", `{"userAgent":"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}`, "", false, event.Device{Platform: "web", Type: "desktop"}, "203.0.113.9", true},
		{"headless chrome", `{"userAgent":"Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/156.0.0.0 Safari/537.36"}`, "", false, event.Device{Platform: "web", Type: "desktop", OS: "Linux", Browser: "Chrome"}, "203.0.113.9", true},
		{"analytics.js without UA", `{"library":{"name":"analytics.js"}}`, "", false, event.Device{}, "203.0.113.9", true},
		{"context ip wins", `{"ip":"198.51.100.7"}`, "", false, event.Device{}, "198.51.100.7", false},
		{"anonymised", `{"ip":"198.51.100.7"}`, "", true, event.Device{}, "198.51.100.0", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := normaliser{cfg: DefaultConfig(), anonIP: c.anon}
			ev, bad := n.normalise(json.RawMessage(`{"type":"track","event":"E","userId":"u","context":`+c.ctx+`}`),
				&reqMeta{receivedAt: time.Now(), clientIP: "203.0.113.9", headerUA: c.headerUA})
			require.Nil(t, bad)
			require.Equal(t, c.want, ev.Device)
			require.Equal(t, c.ip, ev.IP)
			require.Equal(t, c.bot, ev.Bot)
			if c.anon {
				require.NotContains(t, string(ev.Context), "198.51.100.7", "the raw context is anonymised too")
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	trusted, err := parsePrefixes([]string{"10.0.0.0/8", "192.0.2.1"})
	require.NoError(t, err)
	cases := []struct {
		name, remote, xff, want string
	}{
		{"direct", "203.0.113.5:1234", "", "203.0.113.5"},
		{"untrusted peer ignores XFF", "203.0.113.5:1234", "1.2.3.4", "203.0.113.5"},
		{"trusted proxy", "10.1.1.1:80", "198.51.100.1", "198.51.100.1"},
		{"chain of proxies", "10.1.1.1:80", "6.6.6.6, 198.51.100.1, 192.0.2.1", "198.51.100.1"},
		{"spoofed left entries ignored", "10.1.1.1:80", "1.1.1.1, 198.51.100.2", "198.51.100.2"},
		{"garbage XFF", "10.1.1.1:80", "nonsense", "10.1.1.1"},
		{"ipv6", "[2001:db8::1]:80", "", "2001:db8::1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptestRequest(c.remote, c.xff)
			require.Equal(t, c.want, clientIP(r, trusted))
		})
	}
	require.Equal(t, "2001:db8:1::", anonymize("2001:db8:1:2:3:4:5:6"))
	require.Equal(t, "", anonymize("nope"))
}
