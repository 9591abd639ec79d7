package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/ingest"
	"github.com/clickpipe/clickpipe/serve"
)

var update = flag.Bool("update", false, "rewrite golden files")

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// The documented example must load strictly and equal the defaults: it
// documents every key with its default value.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	cfg, err := load("../config.yaml", nil)
	require.NoError(t, err)
	def := Default()
	def.Resolve()
	require.NoError(t, def.Validate())
	var a, b bytes.Buffer
	require.NoError(t, cfg.Print(&a))
	require.NoError(t, def.Print(&b))
	require.Equal(t, b.String(), a.String())
}

// Every key Default() has must appear in config.yaml, so the example
// documents all of them.
func TestExampleConfigListsEveryKey(t *testing.T) {
	body, err := os.ReadFile("../config.yaml")
	require.NoError(t, err)
	for key := range leaves(reflectValue(Default()), "") {
		last := key
		if i := lastDot(key); i >= 0 {
			last = key[i+1:]
		}
		require.Contains(t, string(body), last+":", "config.yaml does not document %s", key)
	}
}

func TestNoFileUsesDefaults(t *testing.T) {
	cfg, err := load("", nil)
	require.NoError(t, err)
	require.Equal(t, "./data", cfg.DataDir)
	require.Equal(t, 25*time.Second, cfg.ShutdownTimeout)
	require.Equal(t, int64(20<<30), cfg.Buffer.MaxBytes)
	require.Equal(t, 168*time.Hour, cfg.Buffer.Retention)
	require.Equal(t, "file://./data/lake", cfg.Archive.URL, "the lake follows data_dir")
	cfg, err = load("", []string{"CLICKPIPE_DATA_DIR=/srv/cp"})
	require.NoError(t, err)
	require.Equal(t, "file:///srv/cp/lake", cfg.Archive.URL)
}

func TestRejectsWithKeyName(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"unknown top-level key", "data_dri: /tmp\n", "data_dri"},
		{"unknown nested key", "buffer:\n  partitons: 3\n", "partitons"},
		{"bad duration", "buffer:\n  retention: 7days\n", "retention"},
		{"bad size", "buffer:\n  max_bytes: lots\n", "max_bytes"},
		{"bad enum", "buffer:\n  durability: sometimes\n", "buffer.durability"},
		{"out of range", "buffer:\n  partitions: 0\n", "buffer.partitions"},
		{"empty required", "data_dir: \"\"\n", "data_dir"},
		{"short token", "query:\n  tokens: [abc]\n", "query.tokens[0]"},
		{"bad log format", "log:\n  format: xml\n", "log.format"},
		{"query on all interfaces without opt-in", "query:\n  listen: \":8081\"\n", "query.allow_remote"},
		{"query on a public address without opt-in", "query:\n  listen: \"192.0.2.7:8081\"\n", "query.listen"},
		{"credentials in archive.url", "archive:\n  url: s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/p\n", "archive.s3.access_key"},
		{"max_event_bytes past the key limit", "ingest:\n  max_event_bytes: 100KiB\n  commit_max_bytes: 4MiB\n", "ingest.max_event_bytes"},
		{"control character in a source name", "ingest:\n  sources:\n    - {name: \"we\\tb\", write_key: abcdefghij}\n", "ingest.sources[0].name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(writeFile(t, tc.body), nil)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "wJalrXUtnFEMI", "a secret in the URL is never printed")
		})
	}
}

func TestQueryListenLoopbackOrOptIn(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:8081", "[::1]:8081", "localhost:8081", "127.0.0.1:0"} {
		_, err := load(writeFile(t, "query:\n  listen: \""+listen+"\"\n"), nil)
		require.NoError(t, err, listen)
	}
	_, err := load(writeFile(t, "query:\n  listen: \":8081\"\n  allow_remote: true\n"), nil)
	require.NoError(t, err)
}

func TestSizesAndDurations(t *testing.T) {
	cfg, err := load(writeFile(t, "buffer:\n  max_bytes: 512MiB\n  retention: 48h\n"), nil)
	require.NoError(t, err)
	require.Equal(t, int64(512<<20), cfg.Buffer.MaxBytes)
	require.Equal(t, 48*time.Hour, cfg.Buffer.Retention)
	for in, want := range map[string]int64{"4096": 4096, "1KiB": 1024, "1 MB": 1e6, "2GiB": 2 << 30, "1.5KiB": 1536, "10g": 10 << 30} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "-1", "GiB", "12XB"} {
		_, err := ParseSize(bad)
		require.Error(t, err, bad)
	}
}

func TestEnvOverrides(t *testing.T) {
	env := []string{
		"CLICKPIPE_BUFFER_DURABILITY=relaxed",
		"CLICKPIPE_BUFFER_MAX_BYTES=1GiB",
		"CLICKPIPE_DATA_DIR=/var/lib/cp",
		"CLICKPIPE_QUERY_TOKENS=token-one-1,token-two-2",
		"PATH=/usr/bin",
	}
	cfg, err := load(writeFile(t, "buffer:\n  durability: fsync\n"), env)
	require.NoError(t, err)
	require.Equal(t, "relaxed", cfg.Buffer.Durability, "env beats the file")
	require.Equal(t, int64(1<<30), cfg.Buffer.MaxBytes)
	require.Equal(t, "/var/lib/cp", cfg.DataDir)
	require.Equal(t, []string{"token-one-1", "token-two-2"}, cfg.Query.Tokens)

	_, err = load("", []string{"CLICKPIPE_BUFFER_PARTITONS=3"})
	require.ErrorContains(t, err, "CLICKPIPE_BUFFER_PARTITONS")
}

// The effective configuration printed by `clickpipe check` redacts
// secrets (golden file testdata/check.golden; -update rewrites it).
func TestPrintRedactsSecrets(t *testing.T) {
	cfg, err := load(writeFile(t, goldenInput), nil)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, cfg.Print(&out))
	golden := filepath.Join("testdata", "check.golden")
	if *update {
		require.NoError(t, os.WriteFile(golden, out.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), out.String())
	require.NotContains(t, out.String(), "super-secret-token")
	for _, s := range goldenSecrets {
		require.NotContains(t, out.String(), s)
	}
}

// `clickpipe check` prints sizes and durations in the units config.yaml
// uses, and what it prints loads back to the same values.
func TestPrintUsesFileUnits(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{2 << 30, "2GiB"}, {512000, "500KiB"}, {1 << 20, "1MiB"}, {1000, "1000"}, {0, "0"}} {
		require.Equal(t, tc.want, formatSize(tc.n))
		back, err := ParseSize(tc.want)
		require.NoError(t, err)
		require.Equal(t, tc.n, back)
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{30 * time.Minute, "30m"}, {168 * time.Hour, "168h"}, {90 * time.Minute, "1h30m"}, {time.Minute + time.Second, "1m1s"},
		{500 * time.Millisecond, "500ms"}, {0, "0s"}, {2 * time.Second, "2s"}} {
		require.Equal(t, tc.want, formatDuration(tc.d))
		back, err := time.ParseDuration(tc.want)
		require.NoError(t, err)
		require.Equal(t, tc.d, back)
	}
	def := Default()
	var out bytes.Buffer
	require.NoError(t, def.Print(&out))
	require.Contains(t, out.String(), "min_free_bytes: 2GiB")
	require.Contains(t, out.String(), "retention: 168h\n")
}

// Write keys can come from the environment alone (docker run -e).
func TestSourcesFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want []ingest.Source
		err  string
	}{
		{env: "wk_0123456789", want: []ingest.Source{{Name: "default", WriteKey: "wk_0123456789"}}},
		{env: "web=wk_web12345, ios=wk_ios12345", want: []ingest.Source{{Name: "web", WriteKey: "wk_web12345"}, {Name: "ios", WriteKey: "wk_ios12345"}}},
		{env: "web=", err: "name=write_key"},
		{env: " , ", err: "empty"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			cfg, err := load("", []string{"CLICKPIPE_INGEST_SOURCES=" + tc.env})
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, cfg.Ingest.Sources)
		})
	}
}

func TestCluster(t *testing.T) {
	base := "cluster:\n  enabled: true\n  node_name: n1\n  listen: 127.0.0.1:6222\n  routes: [nats-route://127.0.0.1:6223]\n"
	cfg, err := load(writeFile(t, base), nil)
	require.NoError(t, err)
	require.Equal(t, 3, cfg.Buffer.Cluster.StreamReplicas(), "R3 by default when clustered")
	require.Equal(t, "n1", cfg.Buffer.Cluster.NodeName, "the buffer gets the cluster section")
	require.False(t, cfg.Buffer.Cluster.PartitionOwnership, "every node sessionizes every partition by default")
	owned, err := load(writeFile(t, base+"  partition_ownership: true\n"), nil)
	require.NoError(t, err)
	require.True(t, owned.Buffer.Cluster.PartitionOwnership)
	routed, err := load(writeFile(t, base+"serve:\n  route_timeout: 5s\n  route_retry_after: 3s\n"), nil)
	require.NoError(t, err)
	require.Equal(t, serve.RouterConfig{Timeout: 5 * time.Second, RetryAfter: 3 * time.Second}, routed.Serve.Router())
	single, err := load("", nil)
	require.NoError(t, err)
	require.Equal(t, 1, single.Buffer.Cluster.StreamReplicas(), "R1 on a single node")
	for _, tc := range []struct{ name, body, want string }{
		{"relaxed refused", base + "buffer:\n  durability: relaxed\n", "buffer.durability"},
		{"no node name", "cluster:\n  enabled: true\n  listen: 127.0.0.1:6222\n  routes: [nats-route://h:1]\n", "cluster.node_name"},
		{"no routes", "cluster:\n  enabled: true\n  node_name: a\n  listen: 127.0.0.1:6222\n", "cluster.routes"},
		{"bad route", "cluster:\n  enabled: true\n  node_name: a\n  listen: 127.0.0.1:6222\n  routes: [http://h:1]\n", "cluster.routes[0]"},
		{"no port", "cluster:\n  enabled: true\n  node_name: a\n  listen: 127.0.0.1:0\n  routes: [nats-route://h:1]\n", "cluster.listen"},
		{"replicas without cluster", "cluster:\n  replicas: 3\n", "cluster.replicas"},
		{"partition ownership without cluster", "cluster:\n  partition_ownership: true\n", "cluster.partition_ownership"},
		{"route timeout too short", "serve:\n  route_timeout: 10ms\n", "serve.route_timeout"},
		{"retry-after in fractions", "serve:\n  route_retry_after: 1500ms\n", "serve.route_retry_after"},
		{"negative process stall_after", "process:\n  stall_after: -1s\n", "process.stall_after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(writeFile(t, tc.body), nil)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
