package snapshot_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/archive/s3test"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/snapshot"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, buffertest.LeakOptions()...)
}

func dirStore(t *testing.T) *archive.DirStore {
	d, err := archive.OpenDir(t.TempDir())
	require.NoError(t, err)
	return d
}

func TestKeysSortByCheckpoint(t *testing.T) {
	require.Equal(t, "_snapshots/p00003/00000000000000000042.snap", snapshot.Key(3, 42))
	require.Less(t, snapshot.Key(3, 999), snapshot.Key(3, 1000))
	require.Less(t, snapshot.Key(9, 1<<62), snapshot.Key(10, 1))
}

func TestStoreListLatestPrune(t *testing.T) {
	testStore(t, dirStore(t))
}

func TestStoreOnS3(t *testing.T) {
	gw := s3test.Start(t)
	cfg := archive.DefaultConfig()
	cfg.URL = "s3://lake/prod"
	cfg.S3 = archive.S3Config{Endpoint: gw.Addr, Region: "us-east-1", AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey,
		PathStyle: true, CreateBucket: true, Timeout: 5 * time.Second}
	st, err := archive.OpenStore(t.Context(), cfg)
	require.NoError(t, err)
	testStore(t, st)
}

func testStore(t *testing.T, objs snapshot.Objects) {
	ctx := context.Background()
	s := snapshot.NewStore(objs)
	_, ok, err := s.Latest(ctx, 1)
	require.NoError(t, err)
	require.False(t, ok)
	for _, seq := range []uint64{20, 5, 1_000_000_000_000, 300} {
		_, err := s.Put(ctx, 1, seq, []byte{byte(seq)})
		require.NoError(t, err)
	}
	_, err = s.Put(ctx, 11, 7, []byte("another partition"))
	require.NoError(t, err)
	require.NoError(t, objs.Put(ctx, snapshot.Prefix+"p00001/notes.txt", []byte("not a snapshot")))

	refs, err := s.List(ctx, 1)
	require.NoError(t, err)
	var seqs []uint64
	for _, r := range refs {
		seqs = append(seqs, r.LastSeq)
	}
	require.Equal(t, []uint64{5, 20, 300, 1_000_000_000_000}, seqs)
	latest, ok, err := s.Latest(ctx, 1)
	require.NoError(t, err)
	require.True(t, ok)
	data, err := s.Get(ctx, latest)
	require.NoError(t, err)
	require.Equal(t, []byte{byte(1_000_000_000_000 & 0xff)}, data)

	n, err := s.Prune(ctx, 1, 2)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	refs, err = s.List(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, []snapshot.Ref{{Partition: 1, LastSeq: 300, Key: snapshot.Key(1, 300)},
		{Partition: 1, LastSeq: 1_000_000_000_000, Key: snapshot.Key(1, 1_000_000_000_000)}}, refs)
	other, err := s.List(ctx, 11)
	require.NoError(t, err)
	require.Len(t, other, 1)
}

func TestDirStoreHidesAnUnfinishedUpload(t *testing.T) {
	d := dirStore(t)
	// what DirStore.Put leaves behind when killed before its rename
	dir := filepath.Join(d.Root(), "_snapshots", "p00002")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".tmp-123"), []byte("CPSNAP partial"), 0o644))
	_, ok, err := snapshot.NewStore(d).Latest(t.Context(), 2)
	require.NoError(t, err)
	require.False(t, ok)
}
