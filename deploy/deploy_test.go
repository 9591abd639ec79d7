// Package deploy holds the operator artefacts (Grafana dashboard,
// Prometheus alerts); its test checks them against a running clickpipe.
package deploy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	clickpipetest.RemoveBinary()
	os.Exit(code)
}

// metricRef matches the metric names an expression uses: ours and the Go
// runtime's (Prometheus' own, such as up, are not in /metrics).
var metricRef = regexp.MustCompile(`\b(?:clickpipe|go)_[a-zA-Z0-9_]+\b`)

func refs(exprs []string) map[string][]string {
	out := map[string][]string{}
	for _, e := range exprs {
		for _, m := range metricRef.FindAllString(e, -1) {
			out[m] = append(out[m], e)
		}
	}
	return out
}

// dashboardExprs returns every PromQL string of a Grafana dashboard: the
// panels' targets and the templating queries.
func dashboardExprs(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc any
	require.NoError(t, json.Unmarshal(b, &doc))
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return out
}

type rules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// alertExprs parses the rules file strictly and checks each rule's shape.
func alertExprs(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var r rules
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&r))
	require.NotEmpty(t, r.Groups)
	seen := map[string]bool{}
	var out []string
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			require.NotEmpty(t, rule.Alert)
			require.False(t, seen[rule.Alert], "duplicate alert %s", rule.Alert)
			seen[rule.Alert] = true
			require.NotEmpty(t, rule.Expr, rule.Alert)
			require.Contains(t, []string{"critical", "warning"}, rule.Labels["severity"], rule.Alert)
			require.NotEmpty(t, rule.Annotations["summary"], rule.Alert)
			if rule.For != "" {
				_, err := time.ParseDuration(rule.For)
				require.NoError(t, err, rule.Alert)
			}
			out = append(out, rule.Expr)
		}
	}
	return out
}

// exposed starts clickpipe, sends traffic that touches every labelled
// series the artefacts use (accepted and invalid events, a request per
// route), and returns the metric names in /metrics.
func exposed(t *testing.T) map[string]bool {
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir)
	ready := p.Find("ready", 60*time.Second)
	key, err := os.ReadFile(filepath.Join(dir, "dev-write-key"))
	require.NoError(t, err)
	body := `{"batch":[{"type":"track","event":"Video Playback Started","userId":"u1","messageId":"m1",
		"properties":{"asset_id":"t1","position":0}},{"type":"track","event":"No User"}]}`
	req, err := http.NewRequest(http.MethodPost, "http://"+ready["ingest"].(string)+"/v1/batch", strings.NewReader(body))
	require.NoError(t, err)
	req.SetBasicAuth(strings.TrimSpace(string(key)), "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// A query, for the query API's latency histogram.
	q, err := http.NewRequest(http.MethodGet, "http://"+ready["query"].(string)+"/v1/paths/top", nil)
	require.NoError(t, err)
	tok, err := os.ReadFile(filepath.Join(dir, "dev-query-token"))
	require.NoError(t, err)
	q.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err = http.DefaultClient.Do(q)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	names := map[string]bool{}
	clickpipetest.Eventually(t, 20*time.Second, func() bool {
		_, text := clickpipetest.GetAuth(t, "http://"+ready["query"].(string)+"/metrics", strings.TrimSpace(string(tok)))
		for line := range strings.SplitSeq(text, "\n") {
			if line == "" || line[0] == '#' {
				continue
			}
			if i := strings.IndexAny(line, "{ "); i > 0 {
				names[line[:i]] = true
			}
		}
		// The archive has committed a range (uploads come before the
		// commit, rows after it) and the sessionizer applied.
		return names["clickpipe_archive_rows_written_total"] && names["clickpipe_process_apply_duration_seconds_bucket"]
	}, "an archive commit and an applied batch")
	return names
}

// lazy are labelled metrics whose series appear only after their first
// event (a value-log GC runs every few minutes): the test requires their
// name in the module's non-test source instead.
var lazy = map[string]bool{"clickpipe_serve_gc_runs_total": true}

func registeredInSource(t *testing.T, name string) bool {
	found := false
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil || found {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		found = err == nil && bytes.Contains(b, []byte(`"`+name+`"`))
		return err
	})
	require.NoError(t, err)
	return found
}

func TestArtefactMetricsExist(t *testing.T) {
	dash := dashboardExprs(t, filepath.Join("grafana", "clickpipe.json"))
	alerts := alertExprs(t, filepath.Join("prometheus", "alerts.yaml"))
	want := map[string]map[string][]string{"grafana/clickpipe.json": refs(dash), "prometheus/alerts.yaml": refs(alerts)}
	require.Greater(t, len(want["grafana/clickpipe.json"]), 30, "the dashboard should reference most metrics")
	require.Greater(t, len(want["prometheus/alerts.yaml"]), 8)

	names := exposed(t)
	for file, used := range want {
		var missing []string
		for name, exprs := range used {
			if lazy[name] && registeredInSource(t, name) {
				continue
			}
			if !names[name] {
				missing = append(missing, name+" (in "+exprs[0]+")")
			}
		}
		sort.Strings(missing)
		require.Empty(t, missing, "%s references metrics that /metrics does not expose", file)
	}
}
