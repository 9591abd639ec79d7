package ingest

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/httpx"
)

func TestRoutes(t *testing.T) {
	pub := &capture{}
	h := start(t, testConfig(), pub, nil)
	auth := map[string]string{"Authorization": basic(keyWeb)}
	single := []byte(`{"event":"Play","userId":"u1","name":"Home","groupId":"g1","previousId":"p1"}`)
	cases := []struct {
		name, method, path string
		body               []byte
		want               int
	}{
		{"batch", "POST", "/v1/batch", batchBody(track("u1")), 200},
		{"batch trailing slash", "POST", "/v1/batch/", batchBody(track("u1")), 200},
		{"import", "POST", "/v1/import", batchBody(track("u1")), 200},
		{"b with v1", "POST", "/v1/b", batchBody(track("u1")), 200},
		{"b without v1", "POST", "/b", batchBody(track("u1")), 200},
		{"batch without v1", "POST", "/batch", batchBody(track("u1")), 200},
		{"track", "POST", "/v1/track", single, 200},
		{"identify", "POST", "/v1/identify", single, 200},
		{"page", "POST", "/v1/page", single, 200},
		{"screen", "POST", "/v1/screen", single, 200},
		{"group", "POST", "/v1/group", single, 200},
		{"alias", "POST", "/v1/alias", single, 200},
		{"t", "POST", "/v1/t", single, 200},
		{"i slash", "POST", "/v1/i/", single, 200},
		{"p no v1", "POST", "/p", single, 200},
		{"s", "POST", "/v1/s", single, 200},
		{"g", "POST", "/v1/g", single, 200},
		{"a", "POST", "/v1/a", single, 200},
		{"unknown path", "POST", "/v1/nope", single, 404},
		{"v1 alone", "POST", "/v1", single, 404},
		{"GET on batch", "GET", "/v1/batch", nil, 405},
		{"POST on pixel", "POST", "/v1/pixel/track", nil, 405},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := h.do(t, req{method: c.method, path: c.path, body: c.body, header: auth})
			require.Equal(t, c.want, resp.StatusCode, string(body))
			if c.want == 200 {
				require.JSONEq(t, `{"success":true}`, string(body))
			} else {
				requireJSONError(t, body)
			}
		})
	}
	// Every single-event route stored its implied type.
	types := map[string]int{}
	for _, ev := range pub.decoded(t) {
		types[ev.Type]++
	}
	require.Equal(t, map[string]int{"track": 8, "identify": 2, "page": 2, "screen": 2, "group": 2, "alias": 2}, types)
}

func requireJSONError(t *testing.T, body []byte) httpx.Error {
	t.Helper()
	var e httpx.Error
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	require.NotEmpty(t, e.Code)
	require.NotEmpty(t, e.Message)
	return e
}

func TestPixelAlwaysGIF(t *testing.T) {
	pub := &capture{}
	h := start(t, testConfig(), pub, nil)
	data := base64.StdEncoding.EncodeToString([]byte(`{"userId":"px1","event":"Open","writeKey":"` + keyWeb + `"}`))
	cases := []struct {
		name, path string
		stored     bool
	}{
		{"base64 data", "/v1/pixel/track?data=" + data, true},
		{"flat params", "/v1/pixel/page?writeKey=" + keyWeb + "&userId=px2&name=Home&campaign=x", true},
		{"bad key", "/v1/pixel/track?writeKey=nope&userId=px3&event=E", false},
		{"garbage data", "/v1/pixel/track?data=%%%", false},
		{"unknown type", "/v1/pixel/bogus?writeKey=" + keyWeb + "&userId=px4", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(pub.decoded(t))
			resp, body := h.do(t, req{method: "GET", path: c.path})
			require.Equal(t, 200, resp.StatusCode)
			require.Equal(t, "image/gif", resp.Header.Get("Content-Type"))
			require.Equal(t, gif, body)
			got := len(pub.decoded(t)) - before
			if c.stored {
				require.Equal(t, 1, got)
			} else {
				require.Zero(t, got)
			}
		})
	}
}

// With ingest.public_url the settings document never echoes the Host.
func TestSettingsUsePublicURL(t *testing.T) {
	cfg := testConfig()
	cfg.PublicURL = "https://track.example.com/"
	h := start(t, cfg, &capture{}, nil)
	resp, body := h.do(t, req{method: "GET", path: "/v1/projects/" + keyWeb + "/settings", header: map[string]string{"Host": "evil.example"}})
	require.Equal(t, 200, resp.StatusCode)
	var doc struct {
		Integrations map[string]struct{ APIHost, Protocol string }
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	require.Equal(t, "track.example.com/v1", doc.Integrations["Segment.io"].APIHost)
	require.Equal(t, "https", doc.Integrations["Segment.io"].Protocol)
	require.NotContains(t, string(body), "evil.example")

	cfg.PublicURL = "https://user:pw@track.example.com"
	require.ErrorContains(t, cfg.Validate(), "ingest.public_url")
}

func TestSettingsAndCORS(t *testing.T) {
	h := start(t, testConfig(), &capture{}, nil)
	resp, body := h.do(t, req{method: "GET", path: "/v1/projects/" + keyWeb + "/settings"})
	require.Equal(t, 200, resp.StatusCode)
	var doc struct {
		Integrations map[string]struct{ APIKey, APIHost, Protocol string }
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	seg := doc.Integrations["Segment.io"]
	require.Equal(t, keyWeb, seg.APIKey)
	require.Equal(t, strings.TrimPrefix(h.srv.URL, "http://")+"/v1", seg.APIHost)
	require.Equal(t, "http", seg.Protocol)
	require.Contains(t, resp.Header.Values("Vary"), "Host, X-Forwarded-Proto", "the echoed Host must key caches")

	resp, body = h.do(t, req{method: "GET", path: "/projects/unknown-key/settings"})
	require.Equal(t, 401, resp.StatusCode)
	requireJSONError(t, body)

	for _, path := range []string{"/v1/t", "/v1/b", "/v1/batch", "/v1/pixel/track", "/v1/projects/x/settings"} {
		resp, _ = h.do(t, req{method: "OPTIONS", path: path, header: map[string]string{
			"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "authorization,x-retry-count",
		}})
		require.Equal(t, 204, resp.StatusCode, path)
		require.Equal(t, "http://app.example", resp.Header.Get("Access-Control-Allow-Origin"))
		require.Equal(t, "true", resp.Header.Get("Access-Control-Allow-Credentials"))
		require.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")
		require.Equal(t, "authorization,x-retry-count", resp.Header.Get("Access-Control-Allow-Headers"))
	}
	resp, _ = h.do(t, req{path: "/v1/t", body: []byte(track("u")), header: map[string]string{"Origin": "http://a.example", "Authorization": basic(keyWeb)}})
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "http://a.example", resp.Header.Get("Access-Control-Allow-Origin"))
}

func TestWriteKeys(t *testing.T) {
	pub := &capture{}
	h := start(t, testConfig(), pub, nil)
	noColon := "Basic " + base64.StdEncoding.EncodeToString([]byte(keyServer))
	withBody := func(key string) []byte {
		return []byte(`{"writeKey":"` + key + `","batch":[` + track("u") + `]}`)
	}
	cases := []struct {
		name   string
		header string
		body   []byte
		want   int
		code   string
		source string
	}{
		{"basic with colon", basic(keyServer), batchBody(track("u")), 200, "", "server"},
		{"basic without colon", noColon, batchBody(track("u")), 200, "", "server"},
		{"body key", "", withBody(keyWeb), 200, "", "web"},
		{"basic and same body key", basic(keyWeb), withBody(keyWeb), 200, "", "web"},
		{"bearer plus body key", "Bearer some-oauth-token", withBody(keyWeb), 200, "", "web"},
		{"no key", "", batchBody(track("u")), 401, "invalid_write_key", ""},
		{"unknown basic key", basic("wk_unknown_123"), batchBody(track("u")), 401, "invalid_write_key", ""},
		{"unknown body key", "", withBody("wk_unknown_123"), 401, "invalid_write_key", ""},
		{"prefix of a key", basic(keyWeb[:5]), batchBody(track("u")), 401, "invalid_write_key", ""},
		{"header and body disagree", basic(keyWeb), withBody(keyServer), 401, "write_key_conflict", ""},
		{"bearer only", "Bearer x", batchBody(track("u")), 401, "invalid_write_key", ""},
		{"malformed basic", "Basic !!!", batchBody(track("u")), 401, "invalid_write_key", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(pub.decoded(t))
			hdr := map[string]string{}
			if c.header != "" {
				hdr["Authorization"] = c.header
			}
			resp, body := h.do(t, req{path: "/v1/batch", body: c.body, header: hdr})
			require.Equal(t, c.want, resp.StatusCode, string(body))
			evs := pub.decoded(t)
			if c.want != 200 {
				require.Equal(t, c.code, requireJSONError(t, body).Code)
				require.Len(t, evs, before)
				return
			}
			require.Len(t, evs, before+1)
			require.Equal(t, c.source, evs[len(evs)-1].Source)
		})
	}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

func TestHostileInput(t *testing.T) {
	pub := &capture{}
	h := start(t, testConfig(), pub, nil)
	bigProps := `{"x":"` + strings.Repeat("a", 33<<10) + `"}`
	var many []string
	for range 1200 {
		many = append(many, `{"type":"track","event":"E","userId":"u","properties":{"p":"`+strings.Repeat("b", 400)+`"}}`)
	}
	deep := strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100)
	bomb := gz(append([]byte(`{"batch":[`), bytes.Repeat([]byte(" "), 50<<20)...))
	cases := []struct {
		name   string
		path   string
		body   []byte
		header map[string]string
		want   int
		code   string
	}{
		{"batch over 500 KiB", "/v1/batch", batchBody(many...), nil, 413, "payload_too_large"},
		{"single over 32 KiB", "/v1/track", []byte(`{"userId":"u","event":"E","properties":` + bigProps + `}`), nil, 413, "payload_too_large"},
		{"gzip bomb", "/v1/batch", bomb, map[string]string{"Content-Encoding": "gzip"}, 413, "payload_too_large"},
		{"corrupt gzip", "/v1/batch", []byte("not gzip at all"), map[string]string{"Content-Encoding": "gzip"}, 400, "invalid_json"},
		{"brotli", "/v1/batch", batchBody(track("u")), map[string]string{"Content-Encoding": "br"}, 415, "unsupported_encoding"},
		{"deep JSON", "/v1/batch", []byte(`{"batch":[{"type":"track","event":"E","userId":"u","properties":` + deep + `}]}`), nil, 400, "too_deep"},
		{"invalid UTF-8", "/v1/batch", []byte("{\"batch\":[{\"type\":\"track\",\"event\":\"\xff\xfe\",\"userId\":\"u\"}]}"), nil, 400, "invalid_utf8"},
		{"not JSON", "/v1/batch", []byte("hello"), nil, 400, "invalid_json"},
		{"truncated JSON", "/v1/batch", []byte(`{"batch":[{"type":"tr`), nil, 400, "invalid_json"},
		{"no batch array", "/v1/batch", []byte(`{"type":"track"}`), nil, 400, "invalid_json"},
		{"batch not an array", "/v1/batch", []byte(`{"batch":{}}`), nil, 400, "invalid_json"},
		{"single is an array", "/v1/t", []byte(`[1,2]`), nil, 400, "invalid_json"},
		{"content-length over limit", "/v1/batch", batchBody(track("u")), map[string]string{"X-Test-CL": "10000000"}, 413, "payload_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(pub.decoded(t))
			hdr := map[string]string{"Authorization": basic(keyWeb)}
			for k, v := range c.header {
				hdr[k] = v
			}
			var resp *http.Response
			var body []byte
			if cl := hdr["X-Test-CL"]; cl != "" {
				resp, body = h.rawPost(t, c.path, hdr, c.body, cl)
			} else {
				resp, body = h.do(t, req{path: c.path, body: c.body, header: hdr})
			}
			require.Equal(t, c.want, resp.StatusCode, string(body))
			require.Equal(t, c.code, requireJSONError(t, body).Code)
			require.Len(t, pub.decoded(t), before, "nothing stored")
			// Other clients are unaffected.
			resp, _ = h.do(t, req{path: "/v1/t", body: []byte(track("ok")), header: map[string]string{"Authorization": basic(keyWeb)}})
			require.Equal(t, 200, resp.StatusCode)
		})
	}
}

func TestEveryContentType(t *testing.T) {
	pub := &capture{}
	h := start(t, testConfig(), pub, nil)
	for _, ct := range []string{"", "application/json", "application/json; charset=utf-8", "text/plain", "text/plain;charset=UTF-8",
		"application/x-www-form-urlencoded", "application/octet-stream"} {
		for _, zip := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s gzip=%v", ct, zip), func(t *testing.T) {
				resp, body := h.do(t, req{path: "/v1/b", body: batchBody(track("u")), gzip: zip,
					header: map[string]string{"Content-Type": ct, "Authorization": basic(keyWeb)}})
				require.Equal(t, 200, resp.StatusCode, string(body))
			})
		}
	}
	require.Len(t, pub.decoded(t), 14)
}

func TestLyingContentLength(t *testing.T) {
	pub := &capture{}
	h := start(t, testConfig(), pub, nil)
	hdr := map[string]string{"Authorization": basic(keyWeb)}
	body := batchBody(track("u"))
	// Claims more than it sends, then closes: a truncated body is 408
	// (SDKs retry it) and the connection is closed.
	resp, out := h.rawPost(t, "/v1/batch", hdr, body, fmt.Sprint(len(body)+100))
	require.Equal(t, 408, resp.StatusCode, string(out))
	require.True(t, resp.Close, "Connection: close")
	requireJSONError(t, out)
	// Claims less than it sends: the body is cut at the claimed length.
	resp, out = h.rawPost(t, "/v1/batch", hdr, body, fmt.Sprint(len(body)-5))
	require.Equal(t, 400, resp.StatusCode, string(out))
	require.Empty(t, pub.decoded(t))
}

// Hostile bodies cost bounded memory: a 50 MiB gzip bomb and a 10 MiB
// plain body are refused after reading about the limit.
func TestHostileInputBoundedAllocation(t *testing.T) {
	h := start(t, testConfig(), &capture{}, nil)
	bomb := gz(bytes.Repeat([]byte("["), 50<<20))
	big := bytes.Repeat([]byte(" "), 10<<20)
	for name, c := range map[string]struct {
		body []byte
		enc  string
	}{"gzip bomb": {bomb, "gzip"}, "plain 10 MiB": {big, ""}} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/batch", bytes.NewReader(c.body))
			r.ContentLength = -1 // chunked: no early Content-Length refusal
			r.Header.Set("Authorization", basic(keyWeb))
			r.Header.Set("Content-Encoding", c.enc)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			w := httptest.NewRecorder()
			h.in.Handler().ServeHTTP(w, r)
			runtime.ReadMemStats(&after)
			require.Equal(t, 413, w.Code)
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(4<<20), "allocated bytes")
		})
	}
}
