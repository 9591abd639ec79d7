// Package config is clickpipe's typed configuration: defaults first, then
// config.yaml, then CLICKPIPE_* environment variables, then flags; strict,
// so an unknown key or a bad value is an error naming the key. It is the only
// package besides cmd that sees viper.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/ingest"
	"github.com/clickpipe/clickpipe/internal/disk"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/regulation"
	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/snapshot"
)

// Config is the whole configuration.
type Config struct {
	// DataDir holds the buffer, the serving state and (by default) the lake.
	DataDir string `mapstructure:"data_dir"`
	// ShutdownTimeout is the whole drain budget: three quarters graceful,
	// then in-flight work is abandoned.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT, which
	// wins when set); 0 leaves it off.
	MemoryLimit int64             `mapstructure:"memory_limit"`
	Log         Log               `mapstructure:"log"`
	Disk        disk.Config       `mapstructure:"disk"`
	Query       Query             `mapstructure:"query"`
	Ingest      ingest.Config     `mapstructure:"ingest"`
	Buffer      buffer.Config     `mapstructure:"buffer"`
	Process     process.Config    `mapstructure:"process"`
	Serve       serve.Config      `mapstructure:"serve"`
	Archive     archive.Config    `mapstructure:"archive"`
	Regulation  regulation.Config `mapstructure:"regulation"`
	// Snapshot is the partition state snapshots of partition ownership
	// (cluster.partition_ownership, docs/cluster.md).
	Snapshot snapshot.Config `mapstructure:"snapshot"`
	// Cluster makes this node one of several sharing a replicated buffer
	// (docs/cluster.md). Off by default.
	Cluster buffer.ClusterConfig `mapstructure:"cluster"`
}

// Log configures log/slog.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `mapstructure:"level"`
	// Format is text or json.
	Format string `mapstructure:"format"`
}

// Query is the query listener: query API, live events, /metrics, health.
type Query struct {
	Listen string `mapstructure:"listen"`
	// Tokens are the bearer tokens the query API accepts. With none, serve
	// generates a development token and prints it.
	Tokens []string `mapstructure:"tokens" secret:"true"`
	// AdminTokens are "name=token" pairs for the regulations API (delete
	// and suppress users); the name is what the audit records. With none,
	// serve generates a development admin token and prints it.
	AdminTokens []string `mapstructure:"admin_tokens" secret:"true"`
	// MaxConnections bounds simultaneous connections.
	MaxConnections int `mapstructure:"max_connections"`
	// AllowRemote must be true for Listen to be anything but a loopback
	// address: the listener serves per-user data, live events, /metrics
	// and profiling, every one behind the tokens.
	AllowRemote bool `mapstructure:"allow_remote"`
}

// AdminTokenMap is AdminTokens as name -> token.
func (q Query) AdminTokenMap() map[string]string {
	out := map[string]string{}
	for _, pair := range q.AdminTokens {
		if name, tok, ok := strings.Cut(pair, "="); ok {
			out[strings.TrimSpace(name)] = strings.TrimSpace(tok)
		}
	}
	return out
}

// Remote reports whether Listen binds more than loopback.
func (q Query) Remote() bool { return !loopbackOnly(q.Listen) }

// loopbackOnly reports whether a listen address binds loopback only.
func loopbackOnly(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Default returns the embedded defaults: `clickpipe serve` with no config
// file runs on exactly these.
func Default() Config {
	return Config{
		DataDir:         "./data",
		ShutdownTimeout: 25 * time.Second,
		MemoryLimit:     0,
		Log:             Log{Level: "info", Format: "text"},
		Disk:            disk.DefaultConfig(),
		Query:           Query{Listen: "127.0.0.1:8081", MaxConnections: 1024},
		Ingest:          ingest.DefaultConfig(),
		Buffer:          buffer.DefaultConfig(),
		Process:         process.DefaultConfig(),
		Serve:           serve.DefaultConfig(),
		Archive:         defaultArchive(),
		Regulation:      regulation.DefaultConfig(),
		Snapshot:        snapshot.DefaultConfig(),
		Cluster:         buffer.DefaultClusterConfig(),
	}
}

// defaultArchive leaves the lake URL empty: it resolves to
// file://<data_dir>/lake, so the lake follows data_dir.
func defaultArchive() archive.Config {
	a := archive.DefaultConfig()
	a.URL = ""
	return a
}

// Resolve fills values that derive from other keys.
func (c *Config) Resolve() {
	c.Buffer.Cluster = c.Cluster
	if c.Archive.URL == "" {
		p := filepath.Join(c.DataDir, "lake")
		if !filepath.IsAbs(p) {
			p = "./" + p
		}
		c.Archive.URL = "file://" + p
	}
}

// Validate checks every section and names the offending keys.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < 64<<20 {
		errs = append(errs, fmt.Errorf("memory_limit: %d is below 64MiB (0 turns it off)", c.MemoryLimit))
	}
	if c.ShutdownTimeout < time.Second {
		errs = append(errs, fmt.Errorf("shutdown_timeout: %s is below 1s", c.ShutdownTimeout))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format: %q is neither text nor json", c.Log.Format))
	}
	if c.Query.Listen == "" {
		errs = append(errs, errors.New("query.listen: must not be empty"))
	} else if !c.Query.AllowRemote && !loopbackOnly(c.Query.Listen) {
		errs = append(errs, fmt.Errorf("query.listen: %q is not a loopback address; the query listener serves per-user data, "+
			"live events, /metrics and profiling: keep it on 127.0.0.1, or set query.allow_remote: true "+
			"(CLICKPIPE_QUERY_ALLOW_REMOTE=true) with query.tokens configured and a TLS proxy in front (docs/security.md)", c.Query.Listen))
	}
	for i, t := range c.Query.Tokens {
		if len(t) < 8 {
			errs = append(errs, fmt.Errorf("query.tokens[%d]: shorter than 8 characters", i))
		}
	}
	errs = append(errs, c.validateAdminTokens()...)
	errs = append(errs, c.Disk.Validate(), c.Buffer.Validate())
	errs = append(errs, c.validateSections()...)
	return errors.Join(errs...)
}

// Load builds the configuration from defaults, the file at path (none when
// empty) and CLICKPIPE_<SECTION>_<KEY> environment variables, strictly,
// then validates it.
func Load(path string) (*Config, error) {
	return load(path, os.Environ())
}

func load(path string, environ []string) (*Config, error) {
	v := viper.New()
	def := Default()
	for key, val := range leaves(reflect.ValueOf(def), "") {
		v.SetDefault(key, val)
	}
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
	}
	if err := applyEnv(v, environ); err != nil {
		return nil, err
	}
	cfg := Default()
	err := v.UnmarshalExact(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		sizeHook(),
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		return nil, fmt.Errorf("loading configuration: %w", err)
	}
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	return &cfg, nil
}

// applyEnv maps CLICKPIPE_<SECTION>_<KEY> onto known keys. An unknown
// CLICKPIPE_ variable is an error, like an unknown key in the file.
func applyEnv(v *viper.Viper, environ []string) error {
	known := map[string]string{}
	for key := range leaves(reflect.ValueOf(Default()), "") {
		known[envName(key)] = key
	}
	var errs []error
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "CLICKPIPE_") {
			continue
		}
		if name == envSources {
			sources, err := parseSourcesEnv(val)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			v.Set("ingest.sources", sources)
			continue
		}
		key, ok := known[name]
		if !ok {
			if ignoredEnv[name] {
				continue
			}
			errs = append(errs, fmt.Errorf("environment %s: no such configuration key", name))
			continue
		}
		v.Set(key, val)
	}
	return errors.Join(errs...)
}

// ignoredEnv are CLICKPIPE_ variables read by tools, not configuration.
var ignoredEnv = map[string]bool{
	"CLICKPIPE_QUERY_TOKEN": true, // clickpipe tail
	"CLICKPIPE_VERSITYGW":   true, // tests
	"CLICKPIPE_DUCKDB":      true, // tests
	"CLICKPIPE_BROWSER":     true, // tests
	"CLICKPIPE_WRITE_KEY":   true, // loadgen
	// test suites
	"CLICKPIPE_RELIABILITY":         true,
	"CLICKPIPE_RELIABILITY_REPORTS": true,
	"CLICKPIPE_CRASHPOINT":          true, // test builds (archive/crashpoint_on.go)
	"CLICKPIPE_CRASHPOINT_HIT":      true,
	"CLICKPIPE_ORACLE_SEED":         true,
	"CLICKPIPE_CLUSTER_LONG":        true,
	"CLICKPIPE_CLUSTER_SUITE_TTL":   true,
	"CLICKPIPE_CLUSTER_KILLS":       true, // TestCrashHandovers
	"CLICKPIPE_CLUSTER_KILL":        true,
}

// EnvName is the environment variable that overrides a dotted key.
func envName(key string) string {
	return "CLICKPIPE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// leaves flattens a config struct into dotted keys and values, following
// mapstructure tags.
func leaves(v reflect.Value, prefix string) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time" {
			for k, val := range leaves(fv, key+".") {
				out[k] = val
			}
			continue
		}
		out[key] = fv.Interface()
	}
	return out
}

// validateAdminTokens checks each name=token pair (never printing the token).
func (c *Config) validateAdminTokens() []error {
	var errs []error
	names := map[string]bool{}
	for i, pair := range c.Query.AdminTokens {
		name, tok, ok := strings.Cut(pair, "=")
		name, tok = strings.TrimSpace(name), strings.TrimSpace(tok)
		switch {
		case !ok || name == "":
			errs = append(errs, fmt.Errorf("query.admin_tokens[%d]: must be name=token (the name is recorded in the audit)", i))
		case len(tok) < 16:
			errs = append(errs, fmt.Errorf("query.admin_tokens[%d] (%s): token shorter than 16 characters", i, name))
		case names[name]:
			errs = append(errs, fmt.Errorf("query.admin_tokens[%d]: name %q used twice", i, name))
		case slices.Contains(c.Query.Tokens, tok):
			errs = append(errs, fmt.Errorf("query.admin_tokens[%d] (%s): also a read token in query.tokens; use a separate one", i, name))
		}
		names[name] = true
	}
	return errs
}
