package archive_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/archive/s3test"
)

// s3Config points an archive at a test S3 endpoint.
func s3Config(endpoint, url string) archive.Config {
	cfg := testConfig()
	cfg.URL = url
	cfg.S3 = archive.S3Config{Endpoint: endpoint, Region: "us-east-1", AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey,
		Secure: false, PathStyle: true, CreateBucket: true, Timeout: 5 * time.Second}
	return cfg
}

func TestS3StoreAgainstVersitygw(t *testing.T) {
	gw := s3test.Start(t)
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
		t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
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
