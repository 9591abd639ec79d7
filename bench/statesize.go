package main

import (
	"encoding/binary"
	"io"
	"log/slog"
	"path/filepath"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/clickpipe/clickpipe/state"
)

// userBytes opens a stopped server's serving state and measures the bytes
// each user holds (core record and bookmarks, keys included): p50, p99
// and max over the users present, and how many there are.
func userBytes(dataDir string) (p50, p99, maxBytes float64, users int, err error) {
	st, err := state.Open(state.DefaultOptions(), filepath.Join(dataDir, "state"), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer st.Close()
	per := map[string]int{}
	err = st.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{'P'}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) < 5 || k[3] != 'u' {
				continue
			}
			n, w := binary.Uvarint(k[4:])
			if w <= 0 || 4+w+int(n) >= len(k) {
				continue
			}
			user := string(k[4+w : 4+w+int(n)])
			if suffix := k[4+w+int(n)]; suffix == 's' {
				continue // closed sessions expire with session_ttl; not per-user working state
			}
			per[user] += len(k) + int(it.Item().ValueSize())
		}
		return nil
	})
	if err != nil || len(per) == 0 {
		return 0, 0, 0, 0, err
	}
	sizes := make([]float64, 0, len(per))
	for _, b := range per {
		sizes = append(sizes, float64(b))
	}
	slices.Sort(sizes)
	return pct(sizes, 0.5), pct(sizes, 0.99), sizes[len(sizes)-1], len(sizes), nil
}
