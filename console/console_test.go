package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(Prefix, Handler())
	mux.Handle(Prefix+"/", Handler())
	for _, tc := range []struct {
		name, method, path string
		status             int
		contentType, body  string
	}{
		{"index", "GET", "/console/", 200, "text/html", "clickpipe console"},
		{"no slash redirects", "GET", "/console", 301, "", ""},
		{"script", "GET", "/console/app.js", 200, "text/javascript", "getJSON"},
		{"chart", "GET", "/console/linechart.js", 200, "text/javascript", "class LineChart"},
		{"style", "GET", "/console/app.css", 200, "text/css", ":root"},
		{"missing", "GET", "/console/nope.js", 404, "", ""},
		{"post refused", "POST", "/console/", 405, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			require.Equal(t, tc.status, rec.Code)
			if tc.contentType != "" {
				require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), tc.contentType), rec.Header().Get("Content-Type"))
				require.Contains(t, rec.Header().Get("Content-Security-Policy"), "default-src 'self'")
			}
			require.Contains(t, rec.Body.String(), tc.body)
		})
	}
}

// The pages render event data, which is untrusted: never through innerHTML
// or similar sinks.
func TestNoHTMLSinks(t *testing.T) {
	for _, name := range []string{"assets/app.js", "assets/linechart.js"} {
		b, err := assets.ReadFile(name)
		require.NoError(t, err)
		for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
			require.NotContains(t, string(b), sink, name)
		}
	}
}
