package cmd

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
)

func TestArchiveStatusAndCompactCommands(t *testing.T) {
	cfg := archive.DefaultConfig()
	cfg.URL = "file://" + t.TempDir()
	load := func(string) (archive.Config, error) { return cfg, nil }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status"}, "TABLE"},
		{[]string{"status", "--partitions"}, "never"},
		{[]string{"status", "--json"}, `"table": "events"`},
		{[]string{"compact", "--older-than", "0s"}, `"mergedRanges":0`},
	} {
		var out bytes.Buffer
		c := newArchiveCmd(load)
		c.SetArgs(tc.args)
		c.SetOut(&out)
		require.NoError(t, c.ExecuteContext(t.Context()), tc.args)
		require.Contains(t, out.String(), tc.want, tc.args)
		if tc.args[len(tc.args)-1] == "--json" {
			var st []archive.TableStatus
			require.NoError(t, json.Unmarshal(out.Bytes(), &st))
			require.Len(t, st, 3)
		}
	}
}
