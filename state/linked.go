package state

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// Linked returns ids together with every id identity stitching linked to
// them (docs/domain.md): the user an anonymous id was merged into, and
// every anonymous id merged into one of the users, transitively. It scans
// the alias keys of every partition (regulations are rare; aliases are
// one short key per merged anonymous id).
func (s *Store) Linked(partitions int, ids []string) ([]string, error) {
	// alias: anonymous id -> user
	alias := map[string]string{}
	err := s.View(func(txn *badger.Txn) error {
		for p := range partitions {
			prefix := AliasPrefix(p)
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
			for it.Rewind(); it.Valid(); it.Next() {
				rest := it.Item().Key()[len(prefix):]
				n, w := binary.Uvarint(rest)
				if w <= 0 || uint64(len(rest)-w) != n {
					continue
				}
				anon := string(rest[w:])
				if err := it.Item().Value(func(v []byte) error {
					if i := bytes.IndexByte(v, 0); i > 0 {
						alias[anon] = string(v[:i])
					}
					return nil
				}); err != nil {
					it.Close()
					return err
				}
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
	}
	for grew := true; grew; {
		grew = false
		for anon, user := range alias {
			if set[anon] != set[user] {
				set[anon], set[user], grew = true, true, true
			}
		}
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}
