package reliability

import (
	"bytes"
	"context"
	"path/filepath"

	"github.com/parquet-go/parquet-go"

	"github.com/clickpipe/clickpipe/archive"
)

// lakeRow is the part of an events row the checker needs.
type lakeRow struct {
	MessageID string `parquet:"message_id"`
	Source    string `parquet:"source"`
}

// lakeIDs reads every committed events object of a node's default lake
// (<data_dir>/lake) with parquet-go and counts rows per messageId.
func lakeIDs(dataDir string) (map[string]int, error) {
	return lakeIDsAt(filepath.Join(dataDir, "lake"))
}

// lakeIDsAt reads a lake rooted at dir (a local lake, or a bucket prefix
// inside versitygw's posix root).
func lakeIDsAt(dir string) (map[string]int, error) {
	st, err := archive.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	objs, err := archive.CommittedObjects(ctx, st, archive.TableEvents)
	if err != nil {
		return nil, err
	}
	ids := map[string]int{}
	for _, o := range objs {
		data, err := st.Get(ctx, o.Key)
		if err != nil {
			return nil, err
		}
		rows, err := parquet.Read[lakeRow](bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			ids[r.Source+"/"+r.MessageID]++
		}
	}
	return ids, nil
}

// compareLake fills DupArchive and MissingArchive against the stream's
// distinct ids (all from the dev source).
func compareLake(r *report, stored map[string]int, lake map[string]int, source string) {
	for id := range stored {
		switch n := lake[source+"/"+id]; {
		case n == 0:
			r.MissingArchive++
		case n > 1:
			r.DupArchive += n - 1
		}
	}
	for key := range lake {
		if _, ok := stored[key[len(source)+1:]]; !ok {
			r.UnexpectedArchive++
		}
	}
}
