package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/parquet-go/parquet-go"
)

// Erasing users from the lake (docs/privacy.md, docs/format/lake.md
// "Erasure"). The archive drops the rows of erased users from every range
// it commits, and rewrites the committed objects that hold their rows: each
// object is replaced under its own key (one all-or-nothing Put, so a reader
// sees the old or the new generation, never both, never neither), then its
// manifest is updated. Every table keeps a marker per request under
// _erasures/<table>/<id>.json: written before the rewrite, marked done
// after it, it carries the SHA-256 of the erased ids (never the ids) so
// that a compaction running beside serve filters the rows it merges, and
// it is what `archive status` reports as pending.

// Erasure is one deletion request the lake has to apply.
type Erasure struct {
	ID      string
	UserIDs []string
	// Created is when it was requested: rows of its ids received at or
	// before it are erased.
	Created time.Time
}

// Erasures is what the archive needs from the regulation subsystem.
type Erasures interface {
	// ErasedEvent reports whether data of id received at received must
	// not be kept.
	ErasedEvent(id string, received time.Time) bool
	// PendingErasures lists the requests table still has to apply.
	PendingErasures(table string) []Erasure
	// Erased records that table has applied request id.
	Erased(ctx context.Context, id, table string, found, removed int64) error
}

// ErasurePrefix holds the per-table erasure markers.
const ErasurePrefix = "_erasures/"

// erasureMarker is the lake's own record of an erasure request.
type erasureMarker struct {
	ID      string    `json:"id"`
	Table   string    `json:"table"`
	Created time.Time `json:"created"`
	// IDHashes are hex SHA-256 of the erased ids.
	IDHashes []string  `json:"idHashes"`
	Status   string    `json:"status"` // pending | done
	Objects  int       `json:"objectsRewritten"`
	Removed  int64     `json:"rowsRemoved"`
	Done     time.Time `json:"done,omitzero"`
}

func erasureKey(table, id string) string { return ErasurePrefix + table + "/" + id + ".json" }

func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// rowOwner names the ids a row belongs to and when its data arrived.
type rowOwner[T any] func(r *T) (ids [2]string, received time.Time)

func eventOwner(r *EventRow) ([2]string, time.Time) {
	return [2]string{r.UserID, r.AnonymousID}, r.ReceivedAt
}

func sessionOwner(r *SessionRow) ([2]string, time.Time) {
	return [2]string{r.UserKey}, r.End
}

// failedOwner reads userId and anonymousId from the item's raw JSON (an
// item that does not parse names nobody).
func failedOwner(r *FailedRow) ([2]string, time.Time) {
	var item struct {
		UserID      any `json:"userId"`
		AnonymousID any `json:"anonymousId"`
	}
	_ = json.Unmarshal(r.Raw, &item)
	str := func(v any) string {
		switch v := v.(type) {
		case string:
			return v
		case float64: // SDKs send numeric ids; ingest reads them as text
			return fmt.Sprint(v)
		}
		return ""
	}
	return [2]string{str(item.UserID), str(item.AnonymousID)}, r.ReceivedAt
}

// erasedBy reports whether row belongs to data that must not be kept.
func erasedBy[T any](owner rowOwner[T], erased func(id string, received time.Time) bool) func(*T) bool {
	return func(r *T) bool {
		ids, received := owner(r)
		for _, id := range ids {
			if id != "" && erased(id, received) {
				return true
			}
		}
		return false
	}
}

// rewriteObject replaces the object o with its rows minus those drop
// selects, under the same key. It returns the new object entry and the
// rows removed (0: the object was left as it was).
func rewriteObject[T any](ctx context.Context, st ObjectStore, o Object, drop func(*T) bool, rowGroupRows int64, first, last uint64) (Object, int64, error) {
	data, at, err := readObjectAt(ctx, st, o.Key)
	if err != nil {
		return o, 0, err
	}
	rows, err := parquet.Read[T](bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return o, 0, fmt.Errorf("reading %s: %w", o.Key, err)
	}
	kept := rows[:0]
	for i := range rows {
		if !drop(&rows[i]) {
			kept = append(kept, rows[i])
		}
	}
	removed := int64(len(rows) - len(kept))
	if removed == 0 {
		o.Rows = int64(len(rows)) // repairs a manifest a crash left stale
		o.Bytes = int64(len(data))
		return o, 0, nil
	}
	out, err := encodeParquet(kept, rowGroupRows, first, last)
	if err != nil {
		return o, 0, fmt.Errorf("encoding %s: %w", o.Key, err)
	}
	// All-or-nothing replacement where the object is: at its key, or still
	// staged (a compaction beside serve between its commit and its
	// publication), so that the publication copies the filtered bytes.
	if err := st.Put(ctx, at, out); err != nil {
		return o, 0, err
	}
	o.Rows, o.Bytes = int64(len(kept)), int64(len(out))
	return o, removed, nil
}

// eraseCommitted rewrites every committed object of table that holds rows
// drop selects, and updates the manifests. It returns the objects
// rewritten and the rows removed. Running it again after a crash finds
// the rows already gone and only repairs manifests.
func eraseCommitted[T any](ctx context.Context, st ObjectStore, table string, drop func(*T) bool, rowGroupRows int64, cp *crashpoints) (int, int64, error) {
	l, err := LoadLedger(ctx, st, table)
	if err != nil {
		return 0, 0, err
	}
	objects, removed := 0, int64(0)
	for _, r := range l.Ranges {
		m, err := ReadManifest(ctx, st, r.Key)
		if errors.Is(err, ErrNotFound) {
			continue // compacted away meanwhile: its rows are in a wider range, read later
		}
		if err != nil {
			return objects, removed, err
		}
		changed := false
		m.Rows = 0
		for i, o := range m.Objects {
			no, n, err := rewriteObject(ctx, st, o, drop, rowGroupRows, m.FirstSeq, m.LastSeq)
			if err != nil {
				return objects, removed, err
			}
			if n > 0 {
				objects++
				removed += n
				cp.at("erase-after-object")
			}
			changed = changed || no != o
			m.Objects[i] = no
			m.Rows += no.Rows
		}
		if !changed {
			continue
		}
		body, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return objects, removed, err
		}
		if err := st.Put(ctx, r.Key, body); err != nil {
			return objects, removed, err
		}
	}
	return objects, removed, nil
}

// loadMarkers reads the erasure markers of table.
func loadMarkers(ctx context.Context, st ObjectStore, table string) ([]erasureMarker, error) {
	keys, err := st.List(ctx, ErasurePrefix+table+"/")
	if err != nil {
		return nil, err
	}
	out := make([]erasureMarker, 0, len(keys))
	for _, k := range keys {
		b, err := st.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		var m erasureMarker
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", k, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func putMarker(ctx context.Context, st ObjectStore, m erasureMarker) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return st.Put(ctx, erasureKey(m.Table, m.ID), b)
}

// markerErased is the erased-data rule of a set of markers, for tools that
// have only the lake (compaction): rows of an id whose hash a marker lists,
// received at or before the marker's request.
func markerErased(ms []erasureMarker) func(id string, received time.Time) bool {
	latest := map[string]time.Time{}
	for _, m := range ms {
		for _, h := range m.IDHashes {
			if m.Created.After(latest[h]) {
				latest[h] = m.Created
			}
		}
	}
	return func(id string, received time.Time) bool {
		at, ok := latest[hashID(id)]
		return ok && (received.IsZero() || !received.After(at))
	}
}

// eraseTable applies every pending erasure of one table: marker first,
// then the rewrite, then the marker and the registry are told it is done.
func eraseTable[T any](ctx context.Context, a *Archiver, table string, owner rowOwner[T]) error {
	pending := a.deps.Erasures.PendingErasures(table)
	if len(pending) == 0 {
		return nil
	}
	markers := make([]erasureMarker, len(pending))
	for i, e := range pending {
		markers[i] = erasureMarker{ID: e.ID, Table: table, Created: e.Created.UTC(), Status: "pending"}
		for _, id := range e.UserIDs {
			markers[i].IDHashes = append(markers[i].IDHashes, hashID(id))
		}
		if err := putMarker(ctx, a.store, markers[i]); err != nil {
			return err
		}
	}
	drop := erasedBy(owner, a.deps.Erasures.ErasedEvent)
	objects, removed, err := eraseCommitted(ctx, a.store, table, drop, a.cfg.RowGroupRows, &a.crash)
	if err != nil {
		return err
	}
	a.m.erasedRows.WithLabelValues(table).Add(float64(removed))
	a.log.Info("erasure applied to the lake", "table", table, "requests", len(pending),
		"objects_rewritten", objects, "rows_removed", removed)
	for i, e := range pending {
		// Rows are counted per pass, not per request: the first request
		// of a pass carries them, the others report none.
		var n int64
		if i == 0 {
			n = removed
		}
		markers[i].Status, markers[i].Objects, markers[i].Removed, markers[i].Done = "done", objects, n, time.Now().UTC()
		if err := putMarker(ctx, a.store, markers[i]); err != nil {
			return err
		}
		if err := a.deps.Erasures.Erased(ctx, e.ID, table, n, n); err != nil {
			return err
		}
	}
	return nil
}
