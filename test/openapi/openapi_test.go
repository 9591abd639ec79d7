// Package openapi validates real requests to and responses of a running
// clickpipe against docs/openapi.yaml.
package openapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

const specPath = "../../docs/openapi.yaml"

func TestMain(m *testing.M) {
	code := m.Run()
	clickpipetest.RemoveBinary()
	os.Exit(code)
}

func loadValidator(t *testing.T) validator.Validator {
	spec, err := os.ReadFile(specPath)
	require.NoError(t, err)
	doc, err := libopenapi.NewDocument(spec)
	require.NoError(t, err)
	v, errs := validator.NewValidator(doc)
	require.Empty(t, errs)
	ok, verrs := v.ValidateDocument()
	require.True(t, ok, "docs/openapi.yaml is not a valid OpenAPI document: %s", describe(verrs))
	return v
}

func describe(errs []*verrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n- %s: %s", e.Message, e.Reason)
		if e.SchemaValidationErrors != nil {
			for _, s := range e.SchemaValidationErrors {
				fmt.Fprintf(&b, "\n    %s: %s", s.FieldPath, s.Reason)
			}
		}
	}
	return b.String()
}

// call is one request of the test and what it expects.
type call struct {
	name, base, method, path, contentType, body string
	auth                                        func(*http.Request)
	status                                      int
	// invalidRequest: the request breaks the spec on purpose; only the
	// response is validated.
	invalidRequest bool
	check          func(t *testing.T, body []byte)
}

type server struct{ ingest, query, key, token, admin string }

func (s server) basic(r *http.Request)  { r.SetBasicAuth(s.key, "") }
func (s server) bearer(r *http.Request) { r.Header.Set("Authorization", "Bearer "+s.token) }
func (s server) adminBearer(r *http.Request) {
	r.Header.Set("Authorization", "Bearer "+s.admin)
}

func start(t *testing.T) server {
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir, "CLICKPIPE_PROCESS_SESSION_GAP=1m")
	ready := p.Find("ready", 60*time.Second)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		return strings.TrimSpace(string(b))
	}
	return server{ingest: "http://" + ready["ingest"].(string), query: "http://" + ready["query"].(string),
		key: read("dev-write-key"), token: read("dev-query-token"), admin: read("dev-admin-token")}
}

// viewing is a batch with one viewer's session ten minutes ago (browse,
// play, 2.5 minutes of heartbeats), an identify, and one invalid item.
func viewing(user string) string {
	base := time.Now().UTC().Add(-10 * time.Minute)
	var items []map[string]any
	add := func(sec int, ev map[string]any) {
		ev["userId"] = user
		ev["timestamp"] = base.Add(time.Duration(sec) * time.Second).Format(time.RFC3339Nano)
		ev["messageId"] = fmt.Sprintf("%s-%d", user, sec)
		items = append(items, ev)
	}
	add(0, map[string]any{"type": "page", "name": "home"})
	add(5, map[string]any{"type": "identify", "traits": map[string]any{"plan": "premium"}})
	add(10, map[string]any{"type": "page", "name": "title"})
	for i := 0; i <= 16; i++ {
		name := "Video Content Playing"
		if i == 0 {
			name = "Video Playback Started"
		}
		add(20+10*i, map[string]any{"type": "track", "event": name, "properties": map[string]any{
			"asset_id": "t-api", "session_id": "p1", "position": 10 * i, "total_length": 3600}})
	}
	items = append(items, map[string]any{"type": "track", "event": "No User"})
	b, _ := json.Marshal(map[string]any{"batch": items})
	return string(b)
}

func nonEmpty(field string) func(t *testing.T, body []byte) {
	return func(t *testing.T, body []byte) {
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(body, &m))
		var list []any
		require.NoError(t, json.Unmarshal(m[field], &list))
		require.NotEmpty(t, list, "%s is empty: the schema of its items went unchecked", field)
	}
}

func (s server) calls() []call {
	pixel := base64.StdEncoding.EncodeToString([]byte(`{"writeKey":"` + s.key + `","userId":"u-pixel","event":"Pixel"}`))
	textPlain := `{"writeKey":"` + s.key + `","type":"track","event":"From Browser","anonymousId":"a-1"}`
	cs := []call{
		{name: "track", base: s.ingest, method: "POST", path: "/v1/track", contentType: "application/json",
			body: `{"type":"track","event":"Played","userId":"u-api","messageId":"api-1"}`, auth: s.basic, status: 200},
		{name: "batch with an invalid item", base: s.ingest, method: "POST", path: "/v1/batch", contentType: "application/json",
			body: viewing("viewer-api"), auth: s.basic, status: 200},
		{name: "analytics.js text/plain, key in body", base: s.ingest, method: "POST", path: "/v1/t", contentType: "text/plain",
			body: textPlain, status: 200},
		{name: "import", base: s.ingest, method: "POST", path: "/v1/import", contentType: "application/json",
			body: `{"batch":[{"type":"screen","name":"home","userId":"u-import"}]}`, auth: s.basic, status: 200},
		{name: "malformed JSON", base: s.ingest, method: "POST", path: "/v1/batch", contentType: "application/json",
			body: `{"batch":[`, auth: s.basic, status: 400, invalidRequest: true},
		{name: "no write key", base: s.ingest, method: "POST", path: "/v1/track", contentType: "application/json",
			body: `{"type":"track","event":"x","userId":"u"}`, status: 401, invalidRequest: true},
		{name: "pixel", base: s.ingest, method: "GET", path: "/v1/pixel/track?data=" + pixel, status: 200},
		{name: "settings", base: s.ingest, method: "GET", path: "/v1/projects/" + s.key + "/settings", status: 200},
		{name: "settings, unknown key", base: s.ingest, method: "GET", path: "/v1/projects/nope/settings", status: 401},
		{name: "ingest healthz", base: s.ingest, method: "GET", path: "/healthz", status: 200},
		{name: "ingest readyz", base: s.ingest, method: "GET", path: "/readyz", status: 200},

		{name: "continue watching", base: s.query, method: "GET", path: "/v1/users/viewer-api/continue-watching", auth: s.bearer, status: 200, check: nonEmpty("items")},
		{name: "continue watching, unknown user", base: s.query, method: "GET", path: "/v1/users/nobody/continue-watching", auth: s.bearer, status: 200},
		{name: "sessions", base: s.query, method: "GET", path: "/v1/users/viewer-api/sessions?limit=5", auth: s.bearer, status: 200, check: nonEmpty("sessions")},
		{name: "sessions, bad limit", base: s.query, method: "GET", path: "/v1/users/viewer-api/sessions?limit=0", auth: s.bearer, status: 400, invalidRequest: true},
		{name: "profile", base: s.query, method: "GET", path: "/v1/users/viewer-api/profile", auth: s.bearer, status: 200},
		{name: "profile, unknown user", base: s.query, method: "GET", path: "/v1/users/nobody/profile", auth: s.bearer, status: 200},
		{name: "profile, read your writes", base: s.query, method: "GET", path: "/v1/users/viewer-api/profile?after=0:1,1:1,2:1,3:1", auth: s.bearer, status: 200},
		{name: "profile, bad after", base: s.query, method: "GET", path: "/v1/users/viewer-api/profile?after=x", auth: s.bearer, status: 400, invalidRequest: true},
		{name: "title stats", base: s.query, method: "GET", path: "/v1/titles/t-api/stats", auth: s.bearer, status: 200},
		{name: "title stats, unknown", base: s.query, method: "GET", path: "/v1/titles/none/stats", auth: s.bearer, status: 200},
		{name: "top paths", base: s.query, method: "GET", path: "/v1/paths/top", auth: s.bearer, status: 200, check: nonEmpty("paths")},
		{name: "failed samples", base: s.query, method: "GET", path: "/v1/failed/recent?limit=10", auth: s.bearer, status: 200, check: nonEmpty("items")},
		{name: "failed page", base: s.query, method: "GET", path: "/v1/failed?after_seq=0&limit=10", auth: s.bearer, status: 200, check: nonEmpty("items")},
		{name: "failed page, bad limit", base: s.query, method: "GET", path: "/v1/failed?limit=5000", auth: s.bearer, status: 400, invalidRequest: true},
		{name: "lake status", base: s.query, method: "GET", path: "/v1/lake/status", auth: s.bearer, status: 200, check: nonEmpty("tables")},
		{name: "no token", base: s.query, method: "GET", path: "/v1/paths/top", status: 401, invalidRequest: true},
		{name: "metrics", base: s.query, method: "GET", path: "/metrics", auth: s.bearer, status: 200},
		{name: "query readyz", base: s.query, method: "GET", path: "/readyz", status: 200},
		{name: "query healthz", base: s.query, method: "GET", path: "/healthz", status: 200},
		{name: "regulation", base: s.query, method: "POST", path: "/v1/regulations", contentType: "application/json",
			body: `{"id":"api-1","type":"suppress","user_ids":["u-suppressed"]}`, auth: s.adminBearer, status: 201},
		{name: "regulation, again", base: s.query, method: "POST", path: "/v1/regulations", contentType: "application/json",
			body: `{"id":"api-1","type":"suppress","user_ids":["u-suppressed"]}`, auth: s.adminBearer, status: 200},
		{name: "regulation, id reused", base: s.query, method: "POST", path: "/v1/regulations", contentType: "application/json",
			body: `{"id":"api-1","type":"delete","user_ids":["u-suppressed"]}`, auth: s.adminBearer, status: 409},
		{name: "regulation, bad type", base: s.query, method: "POST", path: "/v1/regulations", contentType: "application/json",
			body: `{"type":"erase","user_ids":["u"]}`, auth: s.adminBearer, status: 400, invalidRequest: true},
		{name: "regulation, read token", base: s.query, method: "POST", path: "/v1/regulations", contentType: "application/json",
			body: `{"type":"delete","user_ids":["u"]}`, auth: s.bearer, status: 401, invalidRequest: true},
		{name: "regulation get", base: s.query, method: "GET", path: "/v1/regulations/api-1", auth: s.adminBearer, status: 200},
		{name: "regulation get, unknown", base: s.query, method: "GET", path: "/v1/regulations/nope", auth: s.adminBearer, status: 404},
		{name: "regulations", base: s.query, method: "GET", path: "/v1/regulations", auth: s.adminBearer, status: 200, check: nonEmpty("regulations")},
	}
	// Every other single-event route and analytics.js's batch route.
	for i, path := range []string{"identify", "page", "screen", "group", "alias", "i", "p", "s", "g", "a"} {
		body := fmt.Sprintf(`{"userId":"u-route","anonymousId":"a-route","previousId":"a-old","groupId":"g1","name":"home","traits":{"plan":"basic"},"messageId":"route-%d"}`, i)
		cs = append(cs, call{name: "route " + path, base: s.ingest, method: "POST", path: "/v1/" + path,
			contentType: "application/json", body: body, auth: s.basic, status: 200})
	}
	cs = append(cs, call{name: "route b", base: s.ingest, method: "POST", path: "/v1/b", contentType: "text/plain",
		body: `{"writeKey":"` + s.key + `","batch":[{"type":"page","name":"home","anonymousId":"a-b"}]}`, status: 200})
	return cs
}

func (c call) do(t *testing.T) (*http.Request, *http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(c.method, c.base+c.path, strings.NewReader(c.body))
	require.NoError(t, err)
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	if c.auth != nil {
		c.auth(req)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	// The validator reads both bodies again.
	req, err = http.NewRequest(c.method, c.base+c.path, strings.NewReader(c.body))
	require.NoError(t, err)
	req.Header = resp.Request.Header.Clone()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return req, resp, body
}

// TestResponsesMatchSpec sends documented requests to a running server and
// validates each request and response against docs/openapi.yaml.
func TestResponsesMatchSpec(t *testing.T) {
	v := loadValidator(t)
	s := start(t)
	calls := s.calls()
	for _, c := range calls[:4] { // ingest first, so the queries have data
		_, resp, _ := c.do(t)
		require.Equal(t, c.status, resp.StatusCode, c.name)
	}
	// Wait until the viewing is in Continue Watching and its session closed.
	clickpipetest.Eventually(t, 20*time.Second, func() bool {
		_, resp, body := call{base: s.query, method: "GET", path: "/v1/paths/top", auth: s.bearer}.do(t)
		return resp.StatusCode == 200 && strings.Contains(string(body), "play")
	}, "the seeded session in top paths")

	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			req, resp, body := c.do(t)
			require.Equal(t, c.status, resp.StatusCode, "%s", body)
			var ok bool
			var errs []*verrors.ValidationError
			if c.invalidRequest {
				ok, errs = v.ValidateHttpResponse(req, resp)
			} else {
				ok, errs = v.ValidateHttpRequestResponse(req, resp)
			}
			require.True(t, ok, "%s %s: %s\nbody: %s", c.method, c.path, describe(errs), body)
			if c.check != nil {
				c.check(t, body)
			}
		})
	}
	t.Run("every documented path is exercised", func(t *testing.T) {
		spec, err := os.ReadFile(specPath)
		require.NoError(t, err)
		var doc struct {
			Paths map[string]any `yaml:"paths"`
		}
		require.NoError(t, yaml.Unmarshal(spec, &doc))
		for p := range doc.Paths {
			re := regexp.MustCompile("^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(p), "[^/]+") + "$")
			hit := p == "/v1/events/live" // a stream: covered by ingest and cmd/tail tests
			for _, c := range calls {
				path, _, _ := strings.Cut(c.path, "?")
				hit = hit || re.MatchString(path)
			}
			if !hit {
				t.Errorf("docs/openapi.yaml path %s has no call in this test", p)
			}
		}
	})
}
