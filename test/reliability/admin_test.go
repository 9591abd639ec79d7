package reliability

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// adminProblems lists what a running node's admin surface gives away:
// /metrics or profiling without the query token, a settings document that
// follows a forged Host instead of ingest.public_url.
func adminProblems(t *testing.T, ready map[string]any) []string {
	var bad []string
	query := ready["query"].(string)
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/profile?seconds=1"} {
		if code, _ := clickpipetest.Get(t, "http://"+query+path); code != http.StatusUnauthorized {
			bad = append(bad, fmt.Sprintf("%s without a token: %d, want 401", path, code))
		}
	}
	if code, _ := clickpipetest.GetAuth(t, "http://"+query+"/metrics", token); code != http.StatusOK {
		bad = append(bad, fmt.Sprintf("/metrics with the token: %d", code))
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+ready["ingest"].(string)+"/v1/projects/"+keyWeb+"/settings", nil)
	req.Host = "evil.example"
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var doc struct {
		Integrations map[string]struct{ APIHost string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
	if got := doc.Integrations["Segment.io"].APIHost; got != "track.example.com/v1" {
		bad = append(bad, fmt.Sprintf("settings apiHost %q under a forged Host, want the public URL's", got))
	}
	return bad
}

func adminNode(t *testing.T, tags string) (*clickpipetest.Proc, map[string]any) {
	p := clickpipetest.StartWith(t, tags, t.TempDir(), []string{"--config", twoSourceConfig(t)},
		"CLICKPIPE_INGEST_PUBLIC_URL=https://track.example.com")
	return p, p.Find("ready", 30*time.Second)
}

// The query listener's admin endpoints need the query token, and the
// settings document never follows the request's Host when a public URL is
// configured.
func TestAdminSurface(t *testing.T) {
	p, ready := adminNode(t, "")
	require.Empty(t, adminProblems(t, ready))
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
}

// Negative control: a build without the admin guard fails the checker.
func TestAdminCheckerCatchesOpenAdmin(t *testing.T) {
	_, ready := adminNode(t, "clickpipe_broken_open_admin")
	bad := adminProblems(t, ready)
	t.Logf("broken build: %q", bad)
	require.NotEmpty(t, bad)
}

// Configuration that would expose the admin surface or print a secret is
// refused by the binary with an error naming the fix, and the secret is
// never printed.
func TestUnsafeConfigRefused(t *testing.T) {
	bin, err := clickpipetest.Binary()
	require.NoError(t, err)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"query on all interfaces", "query:\n  listen: \":0\"\n", "query.allow_remote"},
		{"credentials in archive.url", "archive:\n  url: s3://AKIAEXAMPLE:wJalrXUtnFEMIK7MDENG@bucket/lake\n", "archive.s3.access_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			require.NoError(t, os.WriteFile(cfg, []byte(tc.yaml), 0o600))
			for _, cmd := range []string{"check", "serve"} {
				out, err := runBinary(bin, cmd, "--config", cfg)
				require.Error(t, err, "%s accepted it: %s", cmd, out)
				require.Contains(t, out, tc.want)
				require.NotContains(t, out, "wJalrXUtnFEMIK7MDENG")
			}
		})
	}
}
