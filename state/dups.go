package state

import (
	"encoding/json"
	"fmt"
)

// DupsRecord is what a partition's owner publishes for a lake writer on
// another node (cluster.partition_ownership): every events message of
// partition P with a sequence in (After, Through] has been applied, and
// Lines lists the duplicate line indexes of those that had any (a
// sequence absent from Lines had none). docs/format/buffer.md, DUPS.
type DupsRecord struct {
	Partition int                 `json:"p"`
	After     uint64              `json:"after"`
	Through   uint64              `json:"through"`
	Lines     map[uint64][]uint32 `json:"lines,omitempty"`
}

// EncodeDupsRecord encodes r as JSON.
func EncodeDupsRecord(r DupsRecord) ([]byte, error) { return json.Marshal(r) }

// DecodeDupsRecord decodes EncodeDupsRecord.
func DecodeDupsRecord(b []byte) (DupsRecord, error) {
	var r DupsRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("duplicate lists record: %w", err)
	}
	if r.Through < r.After {
		return r, fmt.Errorf("duplicate lists record: through %d before after %d", r.Through, r.After)
	}
	return r, nil
}
