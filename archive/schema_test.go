package archive_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestSchemaGolden pins the Parquet schema of every table: a change here is
// a change of the lake format (docs/format/lake.md) that readers see.
func TestSchemaGolden(t *testing.T) {
	for _, tc := range []struct {
		table string
		row   any
	}{
		{archive.TableEvents, archive.EventRow{}},
		{archive.TableSessions, archive.SessionRow{}},
		{archive.TableFailed, archive.FailedRow{}},
	} {
		t.Run(tc.table, func(t *testing.T) {
			got := parquet.SchemaOf(tc.row).String() + "\n"
			path := filepath.Join("testdata", tc.table+".schema.golden")
			if *update {
				require.NoError(t, os.MkdirAll("testdata", 0o755))
				require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test ./archive -run TestSchemaGolden -update")
			require.Equal(t, string(want), got)
		})
	}
}
