package cmd

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// tail without --token or $CLICKPIPE_QUERY_TOKEN uses the development
// token a local serve keeps in the data dir; the flag and the variable win.
func TestTailUsesDevelopmentToken(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dev-query-token"), []byte("qt_dev\n"), 0o600))
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "text/event-stream")
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name, env string
		args      []string
		want      string
	}{
		{"data dir", "", nil, "Bearer qt_dev"},
		{"environment", "qt_env", nil, "Bearer qt_env"},
		{"flag", "qt_env", []string{"--token", "qt_flag"}, "Bearer qt_flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CLICKPIPE_QUERY_TOKEN", tc.env)
			c := newTailCmd()
			c.SetArgs(append([]string{"--url", srv.URL, "--data-dir", dir}, tc.args...))
			c.SetOut(&bytes.Buffer{})
			_ = c.ExecuteContext(context.Background())
			require.Equal(t, tc.want, gotAuth)
		})
	}
}

func TestDevCredentialMissing(t *testing.T) {
	require.Empty(t, devCredential(t.TempDir(), "dev-write-key"))
	t.Setenv("CLICKPIPE_DATA_DIR", "/srv/clickpipe")
	require.Equal(t, "/srv/clickpipe", defaultDataDir())
}
