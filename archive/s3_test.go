package archive_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
)

const (
	vgwAccess = "clickpipe-test"
	vgwSecret = "clickpipe-test-secret"
)

// versitygw is a running S3-compatible server; Dir is where it keeps
// buckets as directories and objects as plain files.
type versitygw struct {
	Addr string
	Dir  string
}

// versitygwPath finds the binary scripts/install-versitygw.sh installs.
// With CLICKPIPE_VERSITYGW set the test fails instead of skipping.
func versitygwPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CLICKPIPE_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CLICKPIPE_VERSITYGW=%s: %v", p, err)
		}
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", ".cache", "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		t.Skip("versitygw not installed: run scripts/install-versitygw.sh (set CLICKPIPE_VERSITYGW to require it)")
	}
	return p
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// startVersitygw runs versitygw on a free loopback port over a temp dir and
// stops it (by its own pid) when the test ends.
func startVersitygw(t testing.TB) versitygw {
	t.Helper()
	bin := versitygwPath(t)
	dir := t.TempDir()
	addr := freePort(t)
	cmd := exec.Command(bin, "--port", addr, "posix", dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+vgwAccess, "ROOT_SECRET_KEY="+vgwSecret)
	if os.Getenv("ARCHIVE_TEST_LOG") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not listen on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return versitygw{Addr: addr, Dir: dir}
}

func s3Config(endpoint, url string) archive.Config {
	cfg := testConfig()
	cfg.URL = url
	cfg.S3 = archive.S3Config{Endpoint: endpoint, Region: "us-east-1", AccessKey: vgwAccess, SecretKey: vgwSecret,
		Secure: false, PathStyle: true, CreateBucket: true, Timeout: 5 * time.Second}
	return cfg
}

func TestS3StoreAgainstVersitygw(t *testing.T) {
	gw := startVersitygw(t)
	ctx := t.Context()

	t.Run("missing bucket is a clear error", func(t *testing.T) {
		cfg := s3Config(gw.Addr, "s3://absent/lake")
		cfg.S3.CreateBucket = false
		_, err := archive.OpenStore(ctx, cfg)
		require.ErrorContains(t, err, `bucket "absent" does not exist`)
	})
	t.Run("bad credentials fail at open", func(t *testing.T) {
		cfg := s3Config(gw.Addr, "s3://lake/x")
		cfg.S3.SecretKey = "wrong"
		_, err := archive.OpenStore(ctx, cfg)
		require.Error(t, err)
	})
	t.Run("credentials from the AWS environment", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", vgwAccess)
		t.Setenv("AWS_SECRET_ACCESS_KEY", vgwSecret)
		cfg := s3Config(gw.Addr, "s3://envbucket/p")
		cfg.S3.AccessKey, cfg.S3.SecretKey = "", ""
		_, err := archive.OpenStore(ctx, cfg)
		require.NoError(t, err)
	})
	t.Run("put get list under a prefix", func(t *testing.T) {
		st, err := archive.OpenStore(ctx, s3Config(gw.Addr, "s3://lake/some/prefix"))
		require.NoError(t, err)
		require.NoError(t, st.Put(ctx, "a/b/1.json", []byte("one")))
		require.NoError(t, st.Put(ctx, "a/b/2.json", []byte("two")))
		require.NoError(t, st.Put(ctx, "a/c.json", []byte("three")))
		keys, err := st.List(ctx, "a/b/")
		require.NoError(t, err)
		require.Equal(t, []string{"a/b/1.json", "a/b/2.json"}, keys)
		b, err := st.Get(ctx, "a/b/2.json")
		require.NoError(t, err)
		require.Equal(t, "two", string(b))
		_, err = st.Get(ctx, "a/none.json")
		require.ErrorIs(t, err, archive.ErrNotFound)
		// versitygw's posix backend keeps objects as plain files.
		raw, err := os.ReadFile(filepath.Join(gw.Dir, "lake", "some", "prefix", "a", "c.json"))
		require.NoError(t, err)
		require.Equal(t, "three", string(raw))
	})
}
